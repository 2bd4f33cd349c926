package sandbox

// Check refuses a request as Submit would (a *FieldError, ErrUnsupportedLanguage, ...),
// without taking a slot or running anything: for fronts that accept a job now and run
// it later (the async job manager).
func (e *Engine) Check(req Request) error {
	_, err := e.prepare(req)
	return err
}
