package session

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/netip"
	"sync"
	"time"
)

// addrLimits enforces the per-address limits: how many connections one
// address may hold (so one host cannot fill max_clients and lock everyone
// else out) and how many failed auth attempts it may make per minute (so a
// token cannot be guessed at thousands of tries a second). An IPv6 address
// counts as its /64, which one host can have whole.
type addrLimits struct {
	maxConns    int // 0: no limit
	maxAuthFail int // per authWindow; 0: no limit
	now         func() time.Time

	mu    sync.Mutex // guards conns and auth
	conns map[netip.Prefix]int
	auth  map[netip.Prefix]*authFailures
}

// authWindow is the period failed auth attempts are counted over.
const authWindow = time.Minute

type authFailures struct {
	since time.Time // start of the current window
	n     int
}

func newAddrLimits(maxConns, maxAuthFail int) *addrLimits {
	return &addrLimits{
		maxConns: maxConns, maxAuthFail: maxAuthFail, now: time.Now,
		conns: make(map[netip.Prefix]int), auth: make(map[netip.Prefix]*authFailures),
	}
}

// addrKey returns the address a limit is counted against: the IPv4 address,
// or the IPv6 /64. An unparsable remote address counts as one shared key.
func addrKey(remote string) netip.Prefix {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}
	}
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// acquire counts a connection from k; false means k has its maximum.
func (l *addrLimits) acquire(k netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxConns > 0 && l.conns[k] >= l.maxConns {
		return false
	}
	l.conns[k]++
	return true
}

func (l *addrLimits) release(k netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns[k] <= 1 {
		delete(l.conns, k)
		return
	}
	l.conns[k]--
}

// authBlocked returns how long k must wait before its token is checked
// again: zero unless k failed maxAuthFail times in the current window.
func (l *addrLimits) authBlocked(k netip.Prefix) time.Duration {
	if l.maxAuthFail <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.auth[k]
	if f == nil {
		return 0
	}
	left := authWindow - l.now().Sub(f.since)
	if left <= 0 {
		delete(l.auth, k)
		return 0
	}
	if f.n < l.maxAuthFail {
		return 0
	}
	return left
}

// authFailed counts a refused token from k.
func (l *addrLimits) authFailed(k netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.auth[k]
	if f == nil || now.Sub(f.since) >= authWindow {
		if len(l.auth) >= 4096 {
			l.sweepLocked(now) // bounded memory under a spread-out attack
		}
		f = &authFailures{since: now}
		l.auth[k] = f
	}
	f.n++
}

func (l *addrLimits) sweepLocked(now time.Time) {
	for k, f := range l.auth {
		if now.Sub(f.since) >= authWindow {
			delete(l.auth, k)
		}
	}
}

// tokenMatches compares tokens in constant time: both are hashed first, so
// neither the content nor the length of the server's token leaks through
// timing.
func tokenMatches(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
