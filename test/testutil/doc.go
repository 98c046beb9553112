// Package testutil holds the small helpers that tests of several packages
// share: a log sink safe for concurrent writers, a throw-away PKI,
// deterministic payloads with checks on the files they end up in, and a
// check of an error against the substrings a table expects.
//
// It imports no package of this module, so that the tests of every package
// (passive, tlsctl, auth, cmd/ftpsd, ftps and test/) may use it without an
// import cycle; only test code imports it.
package testutil
