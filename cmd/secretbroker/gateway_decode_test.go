package main

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// decodeBoth decodes data into a new message like want's, once parsed in
// place (the body the gateway read whole) and once from a stream
// (JSONPb's own decoder), and returns both results.
func decodeBoth(t *testing.T, data []byte, want proto.Message) (inPlace, stream proto.Message, inPlaceErr, streamErr error) {
	t.Helper()
	m := newJSONMarshaler()
	inPlace, stream = want.ProtoReflect().New().Interface(), want.ProtoReflect().New().Interface()
	inPlaceErr = m.NewDecoder(newReadBody(bytes.Clone(data))).Decode(inPlace)
	streamErr = m.NewDecoder(bytes.NewReader(data)).Decode(stream)
	return inPlace, stream, inPlaceErr, streamErr
}

// sameDecoding fails t unless both paths agree: the same error, or the
// same message.
func sameDecoding(t *testing.T, data []byte, msg proto.Message) {
	t.Helper()
	inPlace, stream, inPlaceErr, streamErr := decodeBoth(t, data, msg)
	switch {
	case (inPlaceErr == nil) != (streamErr == nil):
		t.Errorf("%q: in place %v, stream %v", data, inPlaceErr, streamErr)
	case inPlaceErr != nil:
		if inPlaceErr.Error() != streamErr.Error() || errors.Is(inPlaceErr, io.EOF) != errors.Is(streamErr, io.EOF) {
			t.Errorf("%q: in place %q, stream %q", data, inPlaceErr, streamErr)
		}
	case !proto.Equal(inPlace, stream):
		t.Errorf("%q: in place %v, stream %v", data, inPlace, stream)
	}
}

// A body read whole is parsed once, in place; what it decodes to, and
// every refusal, is what JSONPb's own decoder gives.
func TestJSONDecoderPaths(t *testing.T) {
	for _, body := range []string{
		`{"name":"repos/o/r/actions/secrets/A","value":"v"}`,
		`  {"name":"repos/o/r/actions/secrets/A","value":"v"}` + "\n\t ",
		`{"requests":[{"name":"repos/o/r/actions/secrets/A","value":"v"},{"name":"orgs/o/actions/secrets/B","value":"w","visibility":"selected","selected_repository_ids":["1",2]}]}`,
		`{"requests":[]}{"requests":[]}`,
		`{"requests":[]} x`,
		``,
		"  \n",
		`null`,
		`[]`,
		`{"nope":1}`,
		`{"requests":[],"requests":[]}`,
		`{"requests":"PLANTED-value-9"}`,
		`{"requests":[{"value":12345}]}`,
		`{"requests":[`,
		`{"requests":[]`,
		"{\"requests\":[{\"value\":\"\xff\"}]}",
		`{'requests':[]}`,
		`{"requests":[{"name":"a","value":"b",}]}`,
	} {
		t.Run(body, func(t *testing.T) {
			sameDecoding(t, []byte(body), &secretbrokerv1.BatchPutSecretsRequest{})
		})
	}
	// The in-place path is the one taken: a body read whole and parsed
	// once leaves its reader unread.
	m := newJSONMarshaler()
	body := newReadBody([]byte(`{"requests":[{"name":"repos/o/r/actions/secrets/A","value":"v"}]}`))
	var req secretbrokerv1.BatchPutSecretsRequest
	if err := m.NewDecoder(body).Decode(&req); err != nil || len(req.GetRequests()) != 1 {
		t.Fatalf("decode: %v %v", &req, err)
	}
	if _, whole := body.unread(); !whole {
		t.Error("the body was read through the stream decoder, not parsed in place")
	}
}

// FuzzJSONDecoderPaths: for any body, parsing in place and JSONPb's
// stream decoder agree on the message or on the error.
func FuzzJSONDecoderPaths(f *testing.F) {
	for _, s := range []string{
		`{"requests":[{"name":"repos/o/r/actions/secrets/A","value":"v"}]}`,
		`{"requests":[]} {}`,
		`{"requests":[{"visibility":"selected","selected_repository_ids":["1",2]}]}`,
		`{"async":true,"requests":null}`,
		`{"requests":[{"encrypted_value":"AAAA","key_id":"1"}]}`,
		"",
		"null",
		`{"x":`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if strings.Count(body, "[") > 64 {
			return // deep nesting only costs time
		}
		sameDecoding(t, []byte(body), &secretbrokerv1.BatchPutSecretsRequest{})
		sameDecoding(t, []byte(body), &secretbrokerv1.PutSecretRequest{})
	})
}

// The gateway's answers are JSONPb's, byte for byte, and a newline:
// messages marshalled without JSONPb's buffer, anything else by JSONPb
// itself.
func TestJSONMarshalAsJSONPb(t *testing.T) {
	m := newJSONMarshaler()
	for _, v := range []any{
		&secretbrokerv1.PublicKey{KeyId: "568250167242549743", Key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="},
		&secretbrokerv1.ListSecretsResponse{},
		&secretbrokerv1.PutSecretResponse{Created: true},
		map[string]any{"code": 5, "message": "not found"},
		[]string{"a", "b"},
	} {
		got, err := m.Marshal(v)
		want, wantErr := m.JSONPb.Marshal(v)
		want = append(want, '\n') // an answer ends its line
		if err != nil || wantErr != nil || !bytes.Equal(got, want) {
			t.Errorf("Marshal(%T) = %s, %v; JSONPb's %s, %v", v, got, err, want, wantErr)
		}
	}
}
