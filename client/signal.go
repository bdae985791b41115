package client

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// CloseOnSignal drains and closes c when the process receives one of sigs
// (default SIGTERM and SIGINT), giving the drain at most timeout: the
// shards move to other instances before this one exits, so rolling deploys
// never wait for a lease to lapse. The returned channel yields Close's
// result once done. A second signal skips the rest of the drain.
//
//	done := client.CloseOnSignal(c, 30*time.Second)
//	...
//	if err := <-done; err != nil { log.Print(err) }
func CloseOnSignal(c *Consumer, timeout time.Duration, sigs ...os.Signal) <-chan error {
	if len(sigs) == 0 {
		sigs = []os.Signal{syscall.SIGTERM, os.Interrupt}
	}
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...)
	out := make(chan error, 1)
	go func() {
		defer signal.Stop(ch)
		select {
		case <-ch:
		case <-c.Done():
			out <- c.Err()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		go func() {
			select {
			case <-ch:
				cancel()
			case <-ctx.Done():
			}
		}()
		out <- c.Close(ctx)
	}()
	return out
}
