package mirrortest

// Pid is the server's process id: benchmarks read its I/O counters in
// /proc (nginx's sendfile counts in wchar) to act at a point of a transfer.
func (s *Server) Pid() int { return s.cmd.Process.Pid }
