package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/flashsale/flashsale/internal/loadgen"
)

// Errors that set the exit status: errUsage is 2, errFailed (a broken
// guarantee or a 5xx other than 503) and everything else 1.
var (
	errUsage  = errors.New("usage")
	errFailed = errors.New("the run failed")
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal ends the load and still prints the report; a
		// second one kills at once.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// run is the whole command: "serve-trivial [flags]" serves the trivial
// target, "summarize DIR" prints the summary of a scripts/bench.sh run,
// anything else is a load run. getenv supplies the defaults of
// -admin-token and -database-url. The report goes to stdout, progress and
// usage to stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "serve-trivial" {
		return serveTrivial(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "summarize" {
		return summarize(args[1:], stdout)
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	rep, err := loadgen.Run(ctx, cfg.Config, stderr)
	if err != nil {
		return err
	}
	if err := loadgen.WriteReport(stdout, rep, cfg.JSON); err != nil {
		return err
	}
	if cfg.HTMLFile != "" {
		if err := loadgen.WriteHTMLFile(cfg.HTMLFile, rep); err != nil {
			return err
		}
	}
	if rep.Result != loadgen.ResultPass {
		return fmt.Errorf("%w: %v", errFailed, rep.Failures)
	}
	return nil
}
