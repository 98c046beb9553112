// Package test holds ftpsd's integration tests: a real server from
// test/ftpstest on 127.0.0.1, driven over real loopback TLS by the clients
// people use (FileZilla's exact command sequence, github.com/jlaffaye/ftp,
// curl and lftp as processes), plus the negative cases a hostile or broken
// client produces, and ftpsd run as a service (real processes, signals,
// configuration files).
//
// A behaviour is tested in one place: one FTP command's behaviour with the
// raw client of test/ftpstest belongs in ftps/protocol_test.go; this
// package is for real clients and real processes. Helpers shared between
// test files live in test/testutil or as methods of test/ftpstest.
//
// curl and lftp are external programs. test/run.sh installs them; without
// them the tests that need them fail when CI=true and are skipped otherwise.
package test
