package sandbox_test

import (
	"errors"

	"github.com/sandboxd/sandboxd/sandbox"
)

func asField(err error, fe **sandbox.FieldError) bool { return errors.As(err, fe) }
