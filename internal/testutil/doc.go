// Package testutil holds helpers shared by the tests of several packages,
// so that each does not keep its own copy.
package testutil
