package gpu

import "errors"

// Sentinel errors. Callers test them with errors.Is; only the server maps
// them to status codes and messages safe to show a user.
var (
	// ErrNoGPUs: the host has no usable GPU (no driver, or NVML found none).
	ErrNoGPUs = errors.New("no GPUs on this host")
	// ErrUnavailable: the request is valid, but the devices it needs are
	// leased to other jobs, also after waiting as long as it asked to.
	ErrUnavailable = errors.New("GPUs busy")
	// ErrUnknownDevice: a UUID or index that names no GPU on this host.
	ErrUnknownDevice = errors.New("unknown GPU")
	// ErrInvalidRequest: a request that is malformed or can never be met.
	ErrInvalidRequest = errors.New("invalid GPU request")
)
