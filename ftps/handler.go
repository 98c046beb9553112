package ftps

// Every command handler has one signature: it receives a request whose
// gates the dispatcher has passed (login, permission, path) and returns a
// result, which the control loop carries out (session.act).

import "errors"

// request is a command as its handler receives it, gates passed.
type request struct {
	arg    string
	path   vpath // resolved, for commands with a path
	offset int64 // the REST offset, for takesRest commands
	size   int64 // the ALLO size, for takesRest commands
	from   vpath // the RNFR source, for afterRNFR commands
}

// result is what a handler returns: the reply (or the error that
// errReply turns into one), and what the control loop does after it.
type result struct {
	reply
	err     error
	quit    bool      // end the session after the reply
	xfer    *transfer // start this transfer once its 150 is written
	upgrade string    // AUTH: start TLS with this mechanism after the reply
}

// say and fail make the common results.
func say(r reply) result    { return result{reply: r} }
func fail(err error) result { return result{err: err} }

// act carries out a command's result: its reply (mapped from its error if
// it has one), then what the reply announced (TLS, a transfer) or the end
// of the session.
func (s *session) act(res result) {
	if res.err != nil {
		res.reply = errReply(res.err)
		if errors.Is(res.err, errors.ErrUnsupported) {
			// A client that keeps trying what the storage cannot do
			// (APPE on S3, say) shows in the log at the default level.
			s.log.Info("refused: the storage cannot do this", "code", res.code, "reason", res.text)
		}
	}
	if res.code != 0 {
		s.reply(res.reply)
	}
	switch {
	case res.upgrade != "" && !s.upgrade(res.upgrade):
		res.quit = true
	case res.xfer != nil:
		s.launch(res.xfer)
	}
	s.quit = res.quit
}
