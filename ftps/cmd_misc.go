package ftps

import (
	"fmt"
	"strconv"
	"strings"
)

// cmdFEAT adds the HASH line to featText: it marks the session's
// selected algorithm.
func (s *session) cmdFEAT(request) result {
	text := strings.TrimSuffix(featText, "End") + " HASH " + hashFeat(s.hashAlg) + "\nEnd"
	return say(reply{211, text})
}

func (s *session) cmdSYST(request) result { return say(reply{215, "UNIX Type: L8"}) }

func (s *session) cmdNOOP(request) result { return say(reply{200, "NOOP ok."}) }

func (s *session) cmdHELP(request) result { return say(reply{214, s.srv.help}) }

// cmdALLO notes the size of the next upload ("ALLO n" or "ALLO n R m"): a
// storage that can use it (S3: one streamed PUT) does, and the upload must
// then be exactly that long. Elsewhere it is not needed.
func (s *session) cmdALLO(r request) result {
	f := strings.Fields(r.arg)
	n, err := int64(0), error(nil)
	if len(f) > 0 {
		n, err = strconv.ParseInt(f[0], 10, 64)
	}
	if len(f) == 0 || err != nil || n < 0 {
		return say(replySyntax)
	}
	if _, ok := s.st.(sizedStorage); !ok {
		return say(reply{202, "ALLO not needed."})
	}
	s.allo = n
	return say(reply{200, "Next upload: " + strconv.FormatInt(n, 10) + " bytes."})
}

func (s *session) cmdOPTS(r request) result {
	name, value, _ := strings.Cut(strings.TrimSpace(r.arg), " ")
	switch strings.ToUpper(name) {
	case "UTF8", "UTF-8":
		if v := strings.ToUpper(strings.TrimSpace(value)); v == "" || v == "ON" {
			return say(reply{200, "Always in UTF8 mode."})
		}
		return say(reply{504, "UTF8 cannot be turned off."})
	case "MLST":
		facts := parseFacts(value)
		s.mlstFacts = facts
		return say(reply{200, "MLST OPTS " + facts.String()})
	case "HASH":
		return s.optsHash(value)
	}
	return say(reply{501, "Option not understood."})
}

// cmdQUIT lets a running transfer finish first (RFC 959); a job is
// cancelled (see cancelJob).
func (s *session) cmdQUIT(request) result {
	s.cancelJob()
	s.waitTransfer()
	return result{reply: reply{221, "Goodbye."}, quit: true}
}

func (s *session) cmdTYPE(r request) result {
	switch strings.ToUpper(strings.Join(strings.Fields(r.arg), " ")) {
	case "I", "L 8", "L8":
		s.binary = true
		return say(reply{200, "Switching to Binary mode."})
	case "A", "A N":
		// Like vsftpd's default, files travel unchanged in ASCII mode;
		// listings are always CR LF.
		s.binary = false
		return say(reply{200, "Switching to ASCII mode."})
	}
	return say(reply{504, "Unsupported TYPE; use TYPE I or TYPE A."})
}

func (s *session) cmdMODE(r request) result {
	if strings.EqualFold(strings.TrimSpace(r.arg), "S") {
		return say(reply{200, "Mode set to S."})
	}
	return say(reply{504, "Only MODE S is supported."})
}

func (s *session) cmdSTRU(r request) result {
	if strings.EqualFold(strings.TrimSpace(r.arg), "F") {
		return say(reply{200, "Structure set to F."})
	}
	return say(reply{504, "Only STRU F is supported."})
}

// cmdSTAT without argument reports the session; with a path (and logged
// in) it sends a listing over the control connection.
func (s *session) cmdSTAT(r request) result {
	if r.arg != "" && s.state == stateReady && !s.transferRunning() {
		return s.statPath(r.arg)
	}
	var b strings.Builder
	b.WriteString("FTP server status:\n")
	fmt.Fprintf(&b, "Connected to %s\n", s.remote.Addr())
	if s.state == stateReady {
		fmt.Fprintf(&b, "Logged in as %s\n", s.user.Name)
	} else {
		b.WriteString("Not logged in\n")
	}
	fmt.Fprintf(&b, "Control connection encrypted: %t\n", s.tlsConn != nil)
	fmt.Fprintf(&b, "Data protection: %c\n", s.prot)
	if s.binary {
		b.WriteString("TYPE: BINARY\n")
	} else {
		b.WriteString("TYPE: ASCII\n")
	}
	if x := s.xfer; x != nil && s.transferRunning() {
		fmt.Fprintf(&b, "Transfer in progress: %s, %d bytes\n", x.what, x.bytes.Load())
	}
	b.WriteString("End of status")
	return say(reply{211, b.String()})
}
