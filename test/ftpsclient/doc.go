// Package ftpsclient holds the parts of an FTPS client that the test
// helper test/ftpstest and the load tool test/load share: reading the
// PASV and EPSV replies, and opening a data connection that resumes the
// control connection's TLS session, every read and write under a
// deadline. It returns errors and never imports testing, so that a
// program can use it.
package ftpsclient
