package sandbox

// PoolSize reports how many warm containers the engine keeps ready when it is idle, of
// every runtime: what a readiness check waits for once after start.
func (e *Engine) PoolSize() int {
	n := 0
	for _, p := range e.pools {
		n += p.size
	}
	return n
}
