package auth

import (
	"encoding/base64"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// testParams are cheap argon2id parameters for fast tests.
var testParams = argonParams{memory: 1024, time: 1, threads: 1}

// mustHash hashes password with testParams.
func mustHash(t testing.TB, password string) string {
	t.Helper()
	h, err := hashWithParams(password, testParams)
	if err != nil {
		t.Fatalf("hashWithParams: %v", err)
	}
	return h
}

// mustBcrypt hashes password with bcrypt at MinCost.
func mustBcrypt(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatalf("bcrypt: %v", err)
	}
	return string(h)
}

func TestArgon2idRoundTrip(t *testing.T) {
	t.Parallel()
	for _, pw := range []string{"secret", "correct horse battery staple", "pässwörd ✓", strings.Repeat("x", 200)} {
		enc := mustHash(t, pw)
		if !strings.HasPrefix(enc, "$argon2id$v=19$m=1024,t=1,p=1$") {
			t.Errorf("encoding %q: unexpected prefix", enc)
		}
		f := strings.Split(enc, "$")
		if len(f) != 6 {
			t.Fatalf("encoding %q: %d fields", enc, len(f))
		}
		salt, err1 := base64.RawStdEncoding.DecodeString(f[4])
		key, err2 := base64.RawStdEncoding.DecodeString(f[5])
		if err1 != nil || err2 != nil || len(salt) != 16 || len(key) != 32 {
			t.Errorf("encoding %q: salt %d bytes (%v), key %d bytes (%v); want 16 and 32", enc, len(salt), err1, len(key), err2)
		}
		for _, tc := range []struct {
			password string
			want     bool
		}{
			{pw, true},
			{pw + "x", false},
			{pw[:len(pw)-1], false},
			{strings.ToUpper(pw), false},
			{"", false},
		} {
			got, err := VerifyPassword(enc, tc.password)
			if err != nil || got != tc.want {
				t.Errorf("VerifyPassword(hash of %q, %q) = %v, %v; want %v, nil", pw, tc.password, got, err, tc.want)
			}
		}
	}
}

func TestHashSaltIsRandom(t *testing.T) {
	t.Parallel()
	if a, b := mustHash(t, "secret"), mustHash(t, "secret"); a == b {
		t.Errorf("two hashes of one password are equal: %q", a)
	}
}

func TestHashPasswordRefusesEmpty(t *testing.T) {
	t.Parallel()
	if h, err := HashPassword(""); err == nil {
		t.Errorf("HashPassword(\"\") = %q, nil; want an error", h)
	}
}

func TestHashPasswordDefaultParams(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB argon2id")
	}
	enc, err := HashPassword("secret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Errorf("HashPassword = %q; want default parameters m=65536,t=3,p=2", enc)
	}
	if ok, err := VerifyPassword(enc, "secret"); !ok || err != nil {
		t.Errorf("VerifyPassword(HashPassword(secret), secret) = %v, %v", ok, err)
	}
}

func TestBcryptVerify(t *testing.T) {
	t.Parallel()
	enc := mustBcrypt(t, "secret") // $2a$04$...
	pw72 := strings.Repeat("p", 72)
	enc72 := mustBcrypt(t, pw72)
	for _, tc := range []struct {
		name, hash, password string
		want                 bool
	}{
		{"2a right", enc, "secret", true},
		{"2a wrong", enc, "Secret", false},
		{"2a empty", enc, "", false},
		{"2b right", "$2b$" + enc[4:], "secret", true},
		{"2y right", "$2y$" + enc[4:], "secret", true},
		{"2y wrong", "$2y$" + enc[4:], "secret!", false},
		{"72 bytes right", enc72, pw72, true},
		// bcrypt itself would ignore the 73rd byte and match.
		{"73 bytes", enc72, pw72 + "x", false},
		{"1000 bytes", enc72, pw72 + strings.Repeat("x", 928), false},
	} {
		got, err := VerifyPassword(tc.hash, tc.password)
		if err != nil || got != tc.want {
			t.Errorf("%s: VerifyPassword = %v, %v; want %v, nil", tc.name, got, err, tc.want)
		}
	}
}

func TestMalformedHashes(t *testing.T) {
	t.Parallel()
	b64 := base64.RawStdEncoding.EncodeToString
	salt := b64([]byte("0123456789abcdef"))
	key := b64([]byte("0123456789abcdef0123456789abcdef"))
	argon := func(mid string) string { return "$argon2id$v=19$" + mid }
	// params is a valid argon2id hash but for its parameters.
	params := func(p string) string { return argon(p + "$" + salt + "$" + key) }
	ok := "m=1024,t=1,p=1$" + salt + "$" + key
	bc := mustBcrypt(t, "secret")

	for _, tc := range []struct {
		name, hash, want string
	}{
		{"empty", "", "not an argon2id or bcrypt hash"},
		{"plain password", "hunter2", "not an argon2id or bcrypt hash"},
		{"md5 crypt", "$1$abcdefgh$0123456789abcdefghijkl", "not an argon2id or bcrypt hash"},
		{"argon2i", "$argon2i$v=19$" + ok, "want argon2id"},
		{"argon2d", "$argon2d$v=19$" + ok, "want argon2id"},
		{"trailing newline", argon(ok) + "\n", "control"},
		{"leading space", " " + argon(ok), "space"},
		{"too long", argon(ok) + strings.Repeat("A", 600), "longer than"},
		{"no version", "$argon2id$" + ok, "want $argon2id$v=19$"},
		{"version 16", "$argon2id$v=16$" + ok, `"v=16" not supported`},
		{"too few fields", argon("m=1024,t=1,p=1$" + salt), "want $argon2id$v=19$"},
		{"too many fields", argon(ok + "$x"), "want $argon2id$v=19$"},
		{"params order", params("t=1,m=1024,p=1"), "want parameters"},
		{"params missing", params("m=1024,t=1"), "want parameters"},
		{"params extra", params("m=1024,t=1,p=1,k=2"), "want parameters"},
		{"m not a number", params("m=lots,t=1,p=1"), "m is not a number"},
		{"m negative", params("m=-1,t=1,p=1"), "m is not a number"},
		{"m overflow", params("m=99999999999,t=1,p=1"), "m is not a number"},
		{"m zero", params("m=0,t=1,p=1"), "m=0 out of range"},
		{"m below 8p", params("m=15,t=1,p=2"), "m=15 out of range"},
		{"m above 4 GiB", params("m=4194305,t=1,p=1"), "m=4194305 out of range"},
		{"t zero", params("m=1024,t=0,p=1"), "t=0 out of range"},
		{"t 101", params("m=1024,t=101,p=1"), "t=101 out of range"},
		{"p zero", params("m=1024,t=1,p=0"), "p=0 out of range"},
		{"p 256", params("m=4096,t=1,p=256"), "p=256 out of range"},
		{"salt not base64", argon("m=1024,t=1,p=1$" + salt[:10] + "*" + salt[11:] + "$" + key), "salt is not unpadded"},
		{"salt padded", argon("m=1024,t=1,p=1$" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef")) + "$" + key), "salt is not unpadded"},
		{"salt short", argon("m=1024,t=1,p=1$" + b64([]byte("1234567")) + "$" + key), "salt of 7 bytes"},
		{"salt long", argon("m=1024,t=1,p=1$" + b64(make([]byte, 65)) + "$" + key), "salt of 65 bytes"},
		{"salt empty", argon("m=1024,t=1,p=1$$" + key), "salt of 0 bytes"},
		{"hash not base64", argon("m=1024,t=1,p=1$" + salt + "$" + key[:5] + "-" + key[6:]), "hash is not unpadded"},
		{"hash short", argon("m=1024,t=1,p=1$" + salt + "$" + b64(make([]byte, 15))), "hash of 15 bytes"},
		{"hash long", argon("m=1024,t=1,p=1$" + salt + "$" + b64(make([]byte, 65))), "hash of 65 bytes"},
		{"bcrypt 2x", "$2x$" + bc[4:], "not an argon2id or bcrypt hash"},
		{"bcrypt prefix only", "$2b$", "bcrypt: 4 characters"},
		{"bcrypt short", bc[:59], "bcrypt: 59 characters"},
		{"bcrypt long", bc + "A", "bcrypt: 61 characters"},
		{"bcrypt cost letters", bc[:4] + "xx" + bc[6:], "want $2b$<two-digit cost>"},
		{"bcrypt no separator", bc[:6] + "x" + bc[7:], "want $2b$<two-digit cost>"},
		{"bcrypt cost 03", bc[:4] + "03" + bc[6:], "cost 3 out of range"},
		{"bcrypt cost 19", bc[:4] + "19" + bc[6:], "cost 19 out of range"},
		{"bcrypt cost 31", bc[:4] + "31" + bc[6:], "cost 31 out of range"},
		{"bcrypt bad char", bc[:20] + "*" + bc[21:], "not bcrypt base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := VerifyPassword(tc.hash, "secret")
			if got || err == nil {
				t.Fatalf("VerifyPassword = %v, %v; want false and an error", got, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "auth: malformed password hash: ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q; want it to contain %q", msg, tc.want)
			}
			// The hash never ends up in the error.
			for _, secret := range []string{salt, key, bc[7:]} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q contains part of the hash", msg)
				}
			}
		})
	}
}

func TestDummyHashMatchesCost(t *testing.T) {
	t.Parallel()
	for _, enc := range []string{mustHash(t, "a"), mustBcrypt(t, "a"), "$2y$" + mustBcrypt(t, "a")[4:]} {
		h, err := parseHash(enc)
		if err != nil {
			t.Fatal(err)
		}
		d, err := h.dummy()
		if err != nil {
			t.Fatalf("dummy of %q: %v", enc, err)
		}
		if d.costClass() != h.costClass() {
			t.Errorf("dummy cost %q; want %q", d.costClass(), h.costClass())
		}
		if d.verify("a") {
			t.Errorf("dummy of %q matched the user's password", enc)
		}
	}
}

// FuzzParseHash checks that no input makes the parser panic and that every
// accepted hash is within bounds.
func FuzzParseHash(f *testing.F) {
	f.Add(mustHash(f, "secret"))
	f.Add(mustBcrypt(f, "secret"))
	f.Add("$argon2id$v=19$m=4194304,t=100,p=255$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$2y$99$")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parseHash(s)
		if err != nil {
			return
		}
		switch h.kind {
		case kindArgon2id:
			if h.params.check() != nil || len(h.salt) < minArgonSaltLen || len(h.key) < minArgonKeyLen {
				t.Errorf("accepted out-of-bounds hash %q", s)
			}
		case kindBcrypt:
			if h.cost > maxBcryptCost {
				t.Errorf("accepted bcrypt cost %d", h.cost)
			}
		default:
			t.Errorf("unknown kind %d", h.kind)
		}
	})
}

func BenchmarkVerifyArgon2idDefault(b *testing.B) {
	enc, err := HashPassword("correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, err := VerifyPassword(enc, "wrong password"); ok || err != nil {
			b.Fatalf("VerifyPassword = %v, %v", ok, err)
		}
	}
}
