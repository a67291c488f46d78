package main

import (
	"fmt"

	"github.com/prometheus/common/version"
)

// VersionCmd prints the build's version. Set it at build time with
// -ldflags "-X github.com/prometheus/common/version.Version=1.2.3 -X ...Revision=abc"
// so that sentproxy_build_info reports the same.
type VersionCmd struct{}

// Run prints the version.
func (VersionCmd) Run(g *globals) error {
	v := version.Version
	if v == "" {
		v = "dev"
	}
	_, err := fmt.Fprintf(g.stdout, "sentproxy %s (revision %s, %s)\n", v, version.GetRevision(), version.GoVersion)
	return err
}
