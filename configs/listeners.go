package configs

import (
	"fmt"
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
		return bad("admin_listen", "%q has no port; want host:port such as 127.0.0.1:30001, or \"none\" (or empty) for none", s.AdminListen)
	case s.AdminListen == s.Listen && !strings.HasSuffix(s.Listen, ":0"): // port 0: each gets its own
		return bad("admin_listen", "%q is also listen; the admin listener needs its own port", s.AdminListen)
	}
	return nil
}
