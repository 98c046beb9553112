// Package auth holds the users of ftpsd: password verification (argon2id and
// bcrypt), per-user permissions, and a per-address login throttle.
//
// It is a leaf package: it knows nothing of FTP, TLS or sockets. The control
// layer calls [Store.Authenticate] with the user name, the password and the
// client's address, and gets back a [User] (name, home, permissions) or one of
// [ErrInvalidCredentials], [ErrBlocked] or the context's error.
//
// Logins are throttled per client address, counting the attempts still
// being verified, so that simultaneous attempts cannot get more passwords
// judged than max_failures; failures are answered at a fixed time after
// their verification started; and verifications share a memory budget that
// includes their garbage (see [Config]).
//
// Passwords and password hashes are never logged and never appear in errors.
package auth
