package main

import "errors"

// DemoCmd is `sentproxy demo`.
type DemoCmd struct{}

// Run is not written yet.
func (DemoCmd) Run(g *globals) error { return errors.New("demo: not implemented yet") }
