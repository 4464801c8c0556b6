package postgres

// instrumentationName names this package's meter and tracer.
const instrumentationName = "github.com/flashsale/flashsale/internal/postgres"
