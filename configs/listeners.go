package configs

import (
	"fmt"
	"strconv"
	"strings"
)

// validateListeners checks the settings of the listeners beside the game
// port (admin_listen).
func (s *Server) validateListeners() error {
	bad := func(setting, format string, args ...any) error {
		return fmt.Errorf("config: %s: %s: %w", setting, fmt.Sprintf(format, args...), ErrInvalid)
	}
	switch {
	case s.AdminListen == "":
	case !strings.Contains(s.AdminListen, ":"):
		hint := portHint(s.AdminListen)
		if hint == "" {
			hint = " such as 127.0.0.1:30001"
		}
		return bad("admin_listen", "%q has no port; want host:port%s, or \"none\" (or empty) for none", s.AdminListen, hint)
	case s.AdminListen == s.Listen && !strings.HasSuffix(s.Listen, ":0"): // port 0: each gets its own
		return bad("admin_listen", "%q is also listen; the admin listener needs its own port", s.AdminListen)
	}
	return nil
}

// portHint says what a listen address that is only a port number probably
// meant: the one slip everybody makes once.
func portHint(addr string) string {
	if n, err := strconv.Atoi(addr); err != nil || n < 0 || n > 65535 {
		return ""
	}
	return fmt.Sprintf(", e.g. 127.0.0.1:%s (this machine only) or :%s (every interface)", addr, addr)
}
