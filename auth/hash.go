package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Argon2id parameters of HashPassword (RFC 9106 second recommendation, with
// two lanes), and the bounds a configured hash must stay within so that a
// configuration cannot make one login cost gigabytes or minutes.
const (
	argonMemory  uint32 = 64 * 1024 // KiB
	argonTime    uint32 = 3
	argonThreads uint8  = 2
	argonSaltLen        = 16
	argonKeyLen         = 32

	maxArgonMemory  = 4 * 1024 * 1024 // KiB (4 GiB)
	maxArgonTime    = 100
	maxArgonThreads = 255
	minArgonSaltLen = 8
	maxArgonSaltLen = 64
	minArgonKeyLen  = 16
	maxArgonKeyLen  = 64

	// maxBcryptCost bounds the cost of a configured bcrypt hash: cost 18 is
	// already some ten seconds per login, and the format allows 31.
	maxBcryptCost = 18
	// bcryptMaxPassword is the longest password bcrypt uses; longer ones
	// never verify (bcrypt would silently ignore the excess).
	bcryptMaxPassword = 72
	bcryptHashLen     = 60

	// maxHashLen bounds the length of an encoded hash.
	maxHashLen = 512

	// Rough costs of one verification, to find the slowest hash class:
	// argon2id fills m KiB t times, its p lanes in parallel; bcrypt runs
	// 2^cost rounds of its key schedule. Measured with x/crypto on an amd64
	// server (m=65536,t=3,p=2: ~130 ms; bcrypt cost 10: ~70 ms); only their
	// ratio matters.
	argonNsPerKiBPass = 1000
	bcryptNsPerRound  = 70_000
)

const argonFormat = "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>"

// bcryptEncoding is bcrypt's own base64 alphabet, without padding.
var bcryptEncoding = base64.NewEncoding("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789").WithPadding(base64.NoPadding)

// argonParams are the cost parameters of an argon2id hash.
type argonParams struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
}

func (p argonParams) check() error {
	switch {
	case p.threads < 1: // uint8 caps it at maxArgonThreads
		return fmt.Errorf("argon2id: p=%d out of range (1..%d)", p.threads, maxArgonThreads)
	case p.time < 1 || p.time > maxArgonTime:
		return fmt.Errorf("argon2id: t=%d out of range (1..%d)", p.time, maxArgonTime)
	case p.memory < 8*uint32(p.threads) || p.memory > maxArgonMemory:
		return fmt.Errorf("argon2id: m=%d out of range (8*p=%d..%d KiB)", p.memory, 8*uint32(p.threads), maxArgonMemory)
	}
	return nil
}

type hashKind uint8

const (
	kindArgon2id hashKind = iota + 1
	kindBcrypt
)

// passwordHash is a parsed and bounds-checked password hash.
type passwordHash struct {
	kind hashKind

	// argon2id
	params    argonParams
	salt, key []byte

	// bcrypt: the whole encoded hash and its cost
	bcrypt []byte
	cost   int

	// encoded is the hash as configured ("" for a dummy): the login cache
	// binds its entries to it, so that a changed hash misses.
	encoded string
}

// HashPassword hashes password with argon2id (m=65536 KiB, t=3, p=2, a random
// 16-byte salt, a 32-byte key) and returns the PHC string
// "$argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>" (unpadded standard base64).
// An empty password is refused.
func HashPassword(password string) (string, error) {
	return hashWithParams(password, argonParams{memory: argonMemory, time: argonTime, threads: argonThreads})
}

// hashWithParams is HashPassword with other argon2id cost parameters (tests use
// cheap ones).
func hashWithParams(password string, p argonParams) (string, error) {
	if password == "" {
		return "", errors.New("auth: empty password")
	}
	if err := p.check(); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: reading random salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// VerifyPassword reports whether password matches encoded, an argon2id PHC
// string or a bcrypt hash ($2a$, $2b$, $2y$). The comparison is constant-time.
// A password longer than 72 bytes never matches a bcrypt hash. The error is
// non-nil only when encoded is malformed or its parameters are out of bounds;
// it never contains the hash.
func VerifyPassword(encoded, password string) (bool, error) {
	h, err := parseHash(encoded)
	if err != nil {
		return false, fmt.Errorf("auth: malformed password hash: %w", err)
	}
	return h.verify(password), nil
}

// parseHash parses and bounds-checks an encoded hash. Its errors are phrases
// meant to follow a key ("users[1].password_hash: ...") and never quote the
// salt or the hash.
func parseHash(encoded string) (*passwordHash, error) {
	if len(encoded) > maxHashLen {
		return nil, fmt.Errorf("longer than %d characters", maxHashLen)
	}
	for i := 0; i < len(encoded); i++ {
		if c := encoded[i]; c <= ' ' || c >= 0x7f {
			return nil, errors.New("contains a space, control or non-ASCII character")
		}
	}
	var h *passwordHash
	var err error
	switch {
	case strings.HasPrefix(encoded, "$argon2id$"):
		h, err = parseArgon2id(encoded)
	case strings.HasPrefix(encoded, "$2a$"), strings.HasPrefix(encoded, "$2b$"), strings.HasPrefix(encoded, "$2y$"):
		h, err = parseBcrypt(encoded)
	case strings.HasPrefix(encoded, "$argon2i$"), strings.HasPrefix(encoded, "$argon2d$"):
		return nil, errors.New("argon2i and argon2d are not supported (want argon2id)")
	default:
		return nil, errors.New("not an argon2id or bcrypt hash")
	}
	if err != nil {
		return nil, err
	}
	h.encoded = encoded
	return h, nil
}

func parseArgon2id(encoded string) (*passwordHash, error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	f := strings.Split(encoded, "$")
	if len(f) != 6 {
		return nil, errors.New("argon2id: want " + argonFormat)
	}
	if f[2] != "v=19" {
		if strings.HasPrefix(f[2], "v=") && len(f[2]) <= 12 {
			return nil, fmt.Errorf("argon2id: version %q not supported (want v=19)", f[2])
		}
		return nil, errors.New("argon2id: want " + argonFormat)
	}
	var p argonParams
	ps := strings.Split(f[3], ",")
	if len(ps) != 3 {
		return nil, errors.New("argon2id: want parameters m=<KiB>,t=<passes>,p=<lanes>")
	}
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(ps[i], name+"=")
		if !ok {
			return nil, errors.New("argon2id: want parameters m=<KiB>,t=<passes>,p=<lanes>")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("argon2id: %s is not a number below 2^32", name)
		}
		switch name {
		case "m":
			p.memory = uint32(n)
		case "t":
			p.time = uint32(n)
		case "p":
			if n < 1 || n > maxArgonThreads {
				return nil, fmt.Errorf("argon2id: p=%d out of range (1..%d)", n, maxArgonThreads)
			}
			p.threads = uint8(n)
		}
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	salt, err := base64.RawStdEncoding.DecodeString(f[4])
	if err != nil {
		return nil, errors.New("argon2id: salt is not unpadded standard base64")
	}
	if len(salt) < minArgonSaltLen || len(salt) > maxArgonSaltLen {
		return nil, fmt.Errorf("argon2id: salt of %d bytes out of range (%d..%d)", len(salt), minArgonSaltLen, maxArgonSaltLen)
	}
	key, err := base64.RawStdEncoding.DecodeString(f[5])
	if err != nil {
		return nil, errors.New("argon2id: hash is not unpadded standard base64")
	}
	if len(key) < minArgonKeyLen || len(key) > maxArgonKeyLen {
		return nil, fmt.Errorf("argon2id: hash of %d bytes out of range (%d..%d)", len(key), minArgonKeyLen, maxArgonKeyLen)
	}
	return &passwordHash{kind: kindArgon2id, params: p, salt: salt, key: key}, nil
}

func parseBcrypt(encoded string) (*passwordHash, error) {
	// $2b$10$ + 22 characters of salt + 31 of hash
	if len(encoded) != bcryptHashLen {
		return nil, fmt.Errorf("bcrypt: %d characters, want %d", len(encoded), bcryptHashLen)
	}
	if encoded[6] != '$' || !isDigit(encoded[4]) || !isDigit(encoded[5]) {
		return nil, errors.New("bcrypt: want $2b$<two-digit cost>$<53 characters>")
	}
	cost := int(encoded[4]-'0')*10 + int(encoded[5]-'0')
	if cost < bcrypt.MinCost || cost > maxBcryptCost {
		return nil, fmt.Errorf("bcrypt: cost %d out of range (%d..%d)", cost, bcrypt.MinCost, maxBcryptCost)
	}
	for i := 7; i < len(encoded); i++ {
		if !isBcryptChar(encoded[i]) {
			return nil, errors.New("bcrypt: salt and hash are not bcrypt base64")
		}
	}
	// Let the library agree before we rely on it at login time.
	if c, err := bcrypt.Cost([]byte(encoded)); err != nil || c != cost {
		return nil, errors.New("bcrypt: rejected by the bcrypt package")
	}
	return &passwordHash{kind: kindBcrypt, bcrypt: []byte(encoded), cost: cost}, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isBcryptChar(c byte) bool {
	return c == '.' || c == '/' || isDigit(c) || ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z')
}

// verify reports whether password matches h, in constant time with respect to
// the password.
func (h *passwordHash) verify(password string) bool {
	switch h.kind {
	case kindArgon2id:
		key := argon2.IDKey([]byte(password), h.salt, h.params.time, h.params.memory, h.params.threads, uint32(len(h.key)))
		return subtle.ConstantTimeCompare(key, h.key) == 1
	case kindBcrypt:
		pw := []byte(password)
		if len(pw) > bcryptMaxPassword {
			// bcrypt would only look at the first 72 bytes and could match;
			// refuse, but spend the same time as a real comparison.
			_ = bcrypt.CompareHashAndPassword(h.bcrypt, pw[:bcryptMaxPassword])
			return false
		}
		return bcrypt.CompareHashAndPassword(h.bcrypt, pw) == nil
	}
	return false
}

// costClass names the algorithm and cost of h: two hashes of one class take
// the same time to verify.
func (h *passwordHash) costClass() string {
	if h.kind == kindBcrypt {
		return "bcrypt cost=" + strconv.Itoa(h.cost)
	}
	return fmt.Sprintf("argon2id m=%d t=%d p=%d salt=%d key=%d",
		h.params.memory, h.params.time, h.params.threads, len(h.salt), len(h.key))
}

// verifyCost estimates how long one verification of h takes. It is
// deterministic (no calibration at start-up), so that which hash class is
// the slowest does not change from one start to the next.
func (h *passwordHash) verifyCost() time.Duration {
	if h.kind == kindBcrypt {
		return bcryptNsPerRound << h.cost // cost <= maxBcryptCost: no overflow
	}
	p := h.params
	return time.Duration(uint64(p.memory) * uint64(p.time) * argonNsPerKiBPass / uint64(p.threads))
}

// dummy returns a hash of the same algorithm and cost as h that no password
// matches (random salt and hash), for verifying the password of an unknown
// user in the time a known one takes.
func (h *passwordHash) dummy() (*passwordHash, error) {
	switch h.kind {
	case kindArgon2id:
		d := &passwordHash{kind: kindArgon2id, params: h.params, salt: make([]byte, len(h.salt)), key: make([]byte, len(h.key))}
		if _, err := rand.Read(d.salt); err != nil {
			return nil, err
		}
		if _, err := rand.Read(d.key); err != nil {
			return nil, err
		}
		return d, nil
	case kindBcrypt:
		var salt [16]byte
		var sum [23]byte
		if _, err := rand.Read(salt[:]); err != nil {
			return nil, err
		}
		if _, err := rand.Read(sum[:]); err != nil {
			return nil, err
		}
		enc := fmt.Sprintf("%s%02d$%s%s", h.bcrypt[:4], h.cost,
			bcryptEncoding.EncodeToString(salt[:]), bcryptEncoding.EncodeToString(sum[:]))
		return parseBcrypt(enc)
	}
	return nil, errors.New("unknown hash kind")
}

// memoryKiB is the memory one verification of h allocates, in KiB.
func (h *passwordHash) memoryKiB() uint64 {
	if h.kind == kindArgon2id {
		return uint64(h.params.memory)
	}
	return 4 // bcrypt's state is about 4 KiB
}
