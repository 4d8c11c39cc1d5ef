package health

import (
	"context"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Shutdown takes srv out of service without dropping requests, in this order:
//
//  1. [Checker.Drain]: readiness answers 503 "draining"; liveness stays 200, so the orchestrator
//     does not restart the process.
//  2. Wait [Config.DrainDelay] while still serving, so that load balancers see the failing
//     readiness (or the deregistration) and stop sending new requests here.
//  3. [http.Server.Shutdown]: stop accepting connections and wait up to [Config.ShutdownTimeout]
//     for in-flight requests. If they do not finish in time, the remaining connections are closed
//     with [http.Server.Close] and the deadline error is returned.
//
// ctx cuts steps 2 and 3 short when it ends; pass a context that is not already done (not the
// one a signal just cancelled), or the delay is skipped. Shutdown does not close c. Note that
// srv.ListenAndServe returns [http.ErrServerClosed] as soon as step 3 starts: main must wait for
// Shutdown to return before it exits.
func (c *Checker) Shutdown(ctx context.Context, srv *http.Server) error {
	c.Drain()
	t := time.NewTimer(c.cfg.DrainDelay)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	sctx, cancel := context.WithTimeout(ctx, c.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close()
	}
	return err
}

// ShutdownOnSignal blocks until the process receives one of signals (SIGINT and SIGTERM when none
// is given) or ctx ends, then runs [Checker.Shutdown] and returns its error. It stops listening
// for the signals once the first arrives, so a second one ends the process the usual way. Run srv.ListenAndServe
// in another goroutine and call this from main:
//
//	go func() {
//		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
//			log.Fatal(err)
//		}
//	}()
//	if err := hc.ShutdownOnSignal(context.Background(), srv); err != nil {
//		log.Print(err)
//	}
func (c *Checker) ShutdownOnSignal(ctx context.Context, srv *http.Server, signals ...os.Signal) error {
	if len(signals) == 0 {
		signals = []os.Signal{os.Interrupt, syscall.SIGTERM}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, signals...)
	select {
	case <-ch:
	case <-ctx.Done():
	}
	// A second signal gets the default behaviour again: Ctrl-C twice stops the process at once.
	signal.Stop(ch)
	return c.Shutdown(context.WithoutCancel(ctx), srv)
}
