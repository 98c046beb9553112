// Package test holds ftpsd's integration tests: a real server from
// test/ftpstest on 127.0.0.1, driven over real loopback TLS by the clients
// people use (FileZilla's exact command sequence, github.com/jlaffaye/ftp,
// curl and lftp as processes), plus the negative cases a hostile or broken
// client produces.
//
// curl and lftp are external programs. test/run.sh installs them; without
// them the tests that need them fail when CI=true and are skipped otherwise.
package test
