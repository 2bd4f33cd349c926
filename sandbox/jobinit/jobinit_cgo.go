//go:build cgo

package jobinit

/*
#cgo CFLAGS: -Wall -O2
extern void sbx_jobinit(int argc, char **argv, char **envp);
void __attribute__((constructor)) sbx_jobinit_ctor(int argc, char **argv, char **envp) {
	sbx_jobinit(argc, argv, envp);
}
*/
import "C"

// Supported reports nil: the C init is compiled in.
func Supported() error { return nil }
