package sandbox_test

import (
	"errors"
	"fmt"

	"github.com/sandboxd/sandboxd/sandbox"
)

func asField(err error, fe **sandbox.FieldError) bool { return errors.As(err, fe) }

func fmtSscan(s string, a ...any) (int, error) { return fmt.Sscan(s, a...) }
