package client

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
	"github.com/wdsio/wds/topology"
)

// observerHeartbeat is how often an observer checks its stream is alive.
const observerHeartbeat = 5 * time.Second

// ObserverConfig configures an observer: a session that owns nothing and
// only follows routing (a gateway, a dashboard).
type ObserverConfig struct {
	// Endpoints are WDS endpoints, host:port (any node serves observers;
	// required unless Conn is set).
	Endpoints []string
	// Watch lists the domains to follow.
	Watch []string
	// Region, if set, is the region whose key space of a REGIONAL domain
	// Routing().Lookup uses until a Welcome names the cell's region
	// (Routing().LookupIn names any key space).
	Region string
	// Logger for connection problems (default: discard).
	Logger *slog.Logger
	// DialOptions are added to the gRPC dial (default: plaintext).
	DialOptions []grpc.DialOption
	// Conn, if set, is used instead of dialing (its target is the only
	// endpoint). Many observers may share one connection.
	Conn *grpc.ClientConn
	// Pool, if set, shares connections with other consumers and observers
	// of the process. The observer does not close it.
	Pool *Pool
	// OwnRoutingOnly asks a federated cell for the tables of its own
	// grants only, not those it learned from other regions (what WDS cells
	// themselves use to exchange tables; services want the default).
	OwnRoutingOnly bool
}

// Observer follows the routing of some domains. After a disconnect it
// reconnects and receives a fresh snapshot.
type Observer struct {
	cfg     ObserverConfig
	log     *slog.Logger
	routing *Routing
	ctx     context.Context
	cancel  context.CancelFunc

	tr        *transport
	mu        sync.Mutex
	permErr   error
	connected chan struct{}
	connOnce  sync.Once
	done      chan struct{}
}

// NewObserver validates cfg and starts following routing in the background.
func NewObserver(cfg ObserverConfig) (*Observer, error) {
	if cfg.Conn != nil {
		cfg.Endpoints = []string{cfg.Conn.Target()}
	} else if err := checkEndpoints("endpoints", cfg.Endpoints); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Watch) == 0 {
		return nil, fmt.Errorf("%w: watch: an observer must watch at least one domain", ErrInvalid)
	}
	for i, d := range cfg.Watch {
		if err := topology.ValidateName(fmt.Sprintf("watch[%d]", i), d); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	if cfg.Region != "" {
		if err := topology.ValidateName("region", cfg.Region); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := &Observer{
		cfg: cfg, log: cfg.Logger.With("component", "wds-observer"), routing: newRouting(),
		ctx: ctx, cancel: cancel, tr: newTransport(cfg.Endpoints, cfg.Conn, cfg.Pool, cfg.DialOptions, false),
		connected: make(chan struct{}), done: make(chan struct{}),
	}
	o.routing.setRegion(cfg.Region)
	go o.run()
	return o, nil
}

// Routing is the live routing table.
func (o *Observer) Routing() *Routing { return o.routing }

// WaitConnected waits for the first routing snapshot, a permanent error
// (e.g. an unknown domain) or ctx.
func (o *Observer) WaitConnected(ctx context.Context) error {
	select {
	case <-o.connected:
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.permErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the observer stopped.
func (o *Observer) Done() <-chan struct{} { return o.done }

// Err is the permanent error that stopped the observer, if any.
func (o *Observer) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.permErr
}

// Close stops the observer.
func (o *Observer) Close() {
	o.stop(nil)
	<-o.done
	o.tr.close()
}

func (o *Observer) stop(err error) {
	o.mu.Lock()
	if err != nil && o.permErr == nil {
		o.permErr = err
	}
	o.mu.Unlock()
	o.connOnce.Do(func() { close(o.connected) })
	o.cancel()
}

// run keeps an observer session open on any node that answers (any node
// serves routing), found by asking every endpoint at once (see
// transport.run).
func (o *Observer) run() {
	defer close(o.done)
	if ep, err := o.tr.run(o.ctx, o.session, nil); err != nil {
		o.log.Error("observer rejected", "endpoint", ep, "err", err)
		o.stop(err)
	}
}

// session runs one observer stream; end.welcomed reports that routing
// arrived.
func (o *Observer) session(ep string) sessionEnd {
	served, err := o.follow(ep)
	return sessionEnd{welcomed: served, err: err}
}

func (o *Observer) follow(ep string) (served bool, err error) {
	cc, err := o.tr.conns.get(ep)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancel(o.ctx)
	defer cancel()
	stream, err := wdsv1.NewSessionClient(cc).Connect(ctx)
	if err != nil {
		return false, fromStatus(err)
	}
	err = stream.Send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Hello{Hello: &wdsv1.Hello{
		Role: wdsv1.Role_ROLE_OBSERVER, Watch: o.cfg.Watch, OwnRoutingOnly: o.cfg.OwnRoutingOnly,
	}}})
	if err != nil {
		return false, fromStatus(err)
	}
	// Liveness: heartbeat and give up on a node that stops answering
	// without closing the connection.
	var rc recvClock
	rc.touch()
	go func() {
		t := time.NewTicker(observerHeartbeat)
		defer t.Stop()
		var seq uint64
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if rc.quiet(time.Now()) > 3*observerHeartbeat {
				o.log.Warn("observer stream silent; reconnecting", "endpoint", ep)
				cancel()
				return
			}
			seq++
			if stream.Send(&wdsv1.ClientMessage{Msg: &wdsv1.ClientMessage_Heartbeat{Heartbeat: &wdsv1.Heartbeat{Seq: seq}}}) != nil {
				cancel()
				return
			}
		}
	}()
	for {
		m, err := stream.Recv()
		if err != nil {
			return served, fromStatus(err)
		}
		rc.touch()
		switch msg := m.GetMsg().(type) {
		case *wdsv1.ServerMessage_Welcome:
			o.routing.setRegion(msg.Welcome.GetRegion())
		case *wdsv1.ServerMessage_Routing:
			served = true
			if err := o.routing.apply(msg.Routing); err != nil {
				return served, err
			}
			if !msg.Routing.GetMore() {
				o.connOnce.Do(func() { close(o.connected) })
			}
		case *wdsv1.ServerMessage_Redirect:
			return served, fmt.Errorf("%w: redirected: %s", ErrUnavailable, msg.Redirect.GetReason())
		}
	}
}
