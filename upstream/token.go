package upstream

import "log/slog"

// redacted is what a Token prints as, everywhere.
const redacted = "[redacted]"

// Token is the bearer token the client sends to GitHub. It never prints:
// String, GoString, LogValue and MarshalText all return "[redacted]", so a
// Token (or a Config holding one) is safe in fmt output, slog records and
// JSON. Convert it with string(t) where the real value is needed.
type Token string

// String returns "[redacted]".
func (Token) String() string { return redacted }

// GoString returns "[redacted]", for %#v.
func (Token) GoString() string { return redacted }

// LogValue returns "[redacted]", for log/slog.
func (Token) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns "[redacted]", so encoders that honour
// encoding.TextMarshaler (encoding/json among them) never write the token.
func (Token) MarshalText() ([]byte, error) { return []byte(redacted), nil }
