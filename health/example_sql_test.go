package health_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log"
	"sync/atomic"

	"github.com/outgrow/outgrow/health"
)

// fakeDB stands in for a real driver (pgx's stdlib, go-sql-driver/mysql, ...) so that the example
// runs without a database: its connections answer Ping with the error in down.
type fakeDB struct{ down atomic.Pointer[error] }

type fakeConn struct{ db *fakeDB }

func (d *fakeDB) Connect(context.Context) (driver.Conn, error) { return fakeConn{d}, nil }
func (d *fakeDB) Driver() driver.Driver                        { return d }
func (d *fakeDB) Open(string) (driver.Conn, error)             { return fakeConn{d}, nil }

func (c fakeConn) Ping(context.Context) error {
	if err := c.db.down.Load(); err != nil {
		return *err
	}
	return nil
}

func (c fakeConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("fakedb: no queries") }
func (c fakeConn) Close() error                        { return nil }
func (c fakeConn) Begin() (driver.Tx, error)           { return nil, errors.New("fakedb: no transactions") }

// SQLCheck pings a *sql.DB with the check's timeout. With a real driver the only change is how
// db is opened.
func ExampleSQLCheck() {
	fake := &fakeDB{}
	db := sql.OpenDB(fake) // with a real driver: sql.Open("pgx", os.Getenv("DATABASE_URL"))
	defer db.Close()

	hc, err := health.New(health.Config{HealthyThreshold: 1, UnhealthyThreshold: 1},
		health.Check{Name: "db", Func: health.SQLCheck(db)})
	if err != nil {
		log.Fatal(err)
	}
	defer hc.Close()
	ctx := context.Background()
	st, _ := hc.Refresh(ctx)
	fmt.Println(st.Status, st.Checks[0].State)

	refused := errors.New("connection refused")
	fake.down.Store(&refused)
	st, _ = hc.Refresh(ctx)
	fmt.Println(st.Status, st.Checks[0].State, st.Checks[0].LastError)
	// Output:
	// pass healthy
	// fail unhealthy health: sql ping: connection refused
}
