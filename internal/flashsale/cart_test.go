package flashsale

import (
	"reflect"
	"testing"
)

func TestCartAdd(t *testing.T) {
	for _, tt := range []struct {
		name  string
		items []int64
		user  UserCount
		add   int64
		want  string // error code, "" when added
	}{
		{"first item of an empty cart", nil, UserCount{Bought: 0, Limit: 10}, 1, ""},
		{"another item", []int64{1, 2}, UserCount{Bought: 0, Limit: 10}, 3, ""},
		{"item already in the cart", []int64{1, 2}, UserCount{Bought: 0, Limit: 10}, 2, EAlreadyInCart},
		{"already in the cart wins over the limit", []int64{1, 2}, UserCount{Bought: 8, Limit: 10}, 1, EAlreadyInCart},
		{"cart fills the limit", []int64{1, 2, 3}, UserCount{Bought: 0, Limit: 3}, 4, EUserLimit},
		{"bought and held fill the limit", []int64{1}, UserCount{Bought: 9, Limit: 10}, 2, EUserLimit},
		{"bought the limit already", nil, UserCount{Bought: 10, Limit: 10}, 1, EUserLimit},
		{"last place under the limit", []int64{1}, UserCount{Bought: 8, Limit: 10}, 2, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &Cart{Code: "c", ItemIDs: append([]int64(nil), tt.items...)}
			err := c.Add(tt.add, tt.user)
			if got := ErrorCode(err); got != tt.want {
				t.Fatalf("Add(%d) = %v, want %q", tt.add, err, tt.want)
			}
			want := tt.items
			if tt.want == "" {
				want = append(append([]int64(nil), tt.items...), tt.add)
			}
			if !reflect.DeepEqual(c.ItemIDs, want) && !(len(c.ItemIDs) == 0 && len(want) == 0) {
				t.Errorf("items %v, want %v", c.ItemIDs, want)
			}
		})
	}
}

func TestSellCarts(t *testing.T) {
	const sale = 1
	type item struct {
		id   int64
		sold bool
	}
	for _, tt := range []struct {
		name  string
		carts []*Cart
		users map[string]UserCount
		items []item
		want  [][]bool // per cart, per item: sold
		after map[string]int
	}{
		{
			name:  "every item free",
			carts: []*Cart{{Code: "a", SaleID: sale, UserID: "u", ItemIDs: []int64{1, 2}}},
			users: map[string]UserCount{"u": {0, 10}},
			items: []item{{1, false}, {2, false}},
			want:  [][]bool{{true, true}},
			after: map[string]int{"u": 2},
		},
		{
			name:  "a sold item fails",
			carts: []*Cart{{Code: "a", SaleID: sale, UserID: "u", ItemIDs: []int64{1, 2}}},
			users: map[string]UserCount{"u": {0, 10}},
			items: []item{{1, true}, {2, false}},
			want:  [][]bool{{false, true}},
			after: map[string]int{"u": 1},
		},
		{
			name:  "the limit cuts the cart in its order",
			carts: []*Cart{{Code: "a", SaleID: sale, UserID: "u", ItemIDs: []int64{3, 1, 2}}},
			users: map[string]UserCount{"u": {8, 10}},
			items: []item{{1, false}, {2, false}, {3, false}},
			want:  [][]bool{{true, true, false}},
			after: map[string]int{"u": 10},
		},
		{
			name: "earlier carts buy first",
			carts: []*Cart{
				{Code: "a", SaleID: sale, UserID: "u", ItemIDs: []int64{1}},
				{Code: "b", SaleID: sale, UserID: "v", ItemIDs: []int64{1, 2}},
			},
			users: map[string]UserCount{"u": {0, 10}, "v": {0, 10}},
			items: []item{{1, false}, {2, false}},
			want:  [][]bool{{true}, {false, true}},
			after: map[string]int{"u": 1, "v": 1},
		},
		{
			name: "one user's carts share the limit",
			carts: []*Cart{
				{Code: "a", SaleID: sale, UserID: "u", ItemIDs: []int64{1, 2}},
				{Code: "b", SaleID: sale, UserID: "u", ItemIDs: []int64{3, 4}},
			},
			users: map[string]UserCount{"u": {7, 10}},
			items: []item{{1, false}, {2, false}, {3, false}, {4, false}},
			want:  [][]bool{{true, true}, {true, false}},
			after: map[string]int{"u": 10},
		},
		{
			name:  "an item the store does not have fails",
			carts: []*Cart{{Code: "a", SaleID: sale, UserID: "u", ItemIDs: []int64{9}}},
			users: map[string]UserCount{"u": {0, 10}},
			want:  [][]bool{{false}},
			after: map[string]int{"u": 0},
		},
		{
			name:  "an empty cart buys nothing",
			carts: []*Cart{{Code: "a", SaleID: sale, UserID: "u"}},
			users: map[string]UserCount{"u": {0, 10}},
			want:  [][]bool{{}},
			after: map[string]int{"u": 0},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			users := map[UserKey]*UserCount{}
			for id, u := range tt.users {
				users[UserKey{sale, id}] = &u
			}
			items := map[int64]*StockItem{}
			for _, it := range tt.items {
				items[it.id] = &StockItem{Name: "n", Sold: it.sold}
			}
			results := SellCarts(tt.carts, users, items)
			if len(results) != len(tt.carts) {
				t.Fatalf("%d results for %d carts", len(results), len(tt.carts))
			}
			for i, res := range results {
				sold, n := make([]bool, len(res.Items)), 0
				for j, it := range res.Items {
					if it.ID != tt.carts[i].ItemIDs[j] {
						t.Errorf("cart %d item %d is %d, want the cart's order", i, j, it.ID)
					}
					sold[j] = it.Sold
					if it.Sold {
						n++
						if !items[it.ID].Sold {
							t.Errorf("item %d sold but not marked", it.ID)
						}
					}
				}
				if !reflect.DeepEqual(sold, tt.want[i]) {
					t.Errorf("cart %d sold %v, want %v", i, sold, tt.want[i])
				}
				if res.TotalPurchased != n || res.FailedCount != len(res.Items)-n || res.Success != (n > 0) {
					t.Errorf("cart %d totals %+v", i, res)
				}
			}
			for id, want := range tt.after {
				if got := users[UserKey{sale, id}].Bought; got != want {
					t.Errorf("user %s bought %d, want %d", id, got, want)
				}
			}
		})
	}
}
