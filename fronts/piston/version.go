package piston

import (
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/sandboxd/sandboxd/sandbox"
)

// match finds the runtime a client names, as Piston's
// get_latest_runtime_matching_language_version does: the language by name or alias,
// and its version by a semver selector ("*", "3.x", "^3.10", "3.11.2"). sandboxd has
// one version per language, so "latest" is that one.
func (f *Front) match(lang, version string) (sandbox.RuntimeInfo, bool) {
	for _, rt := range f.list() {
		if !strings.EqualFold(rt.Name, lang) && !containsFold(rt.Aliases, lang) {
			continue
		}
		if versionMatches(rt.Version, version) {
			return rt, true
		}
	}
	return sandbox.RuntimeInfo{}, false
}

func containsFold(list []string, s string) bool {
	for _, a := range list {
		if strings.EqualFold(a, s) {
			return true
		}
	}
	return false
}

// versionMatches reports whether a runtime's version satisfies a Piston selector. A
// version that is not semver (a runtime may say "21" or "2024-01") matches "*", itself,
// or a dotted prefix of itself, as sandbox's own lookup does.
func versionMatches(have, selector string) bool {
	selector = strings.TrimSpace(selector)
	if selector == "*" || selector == have || strings.HasPrefix(have, selector+".") {
		return true
	}
	v, err := semver.NewVersion(have)
	if err != nil {
		return false
	}
	c, err := semver.NewConstraint(selector)
	if err != nil {
		return false
	}
	return c.Check(v)
}
