package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// secretPathRepo is the escaped path of repActions' secret S.
const secretPathRepo = "/repos/acme/api/actions/secrets/S"

// No redirect is followed, whatever the method, the status or the
// http.Client: GitHub redirects a renamed or transferred repository's
// routes to the repository it became (which the caller's grant need not
// cover), and Go re-sends a PUT or DELETE answered 301, 302 or 303 as a
// GET whose 200 would pass for the write's answer. The caller gets the
// 3xx as an *Error, after one request, not retried.
func TestRedirectIsNotFollowed(t *testing.T) {
	const sealed = "U0VBTEVEcmVkaXJlY3RTRUFMRUQ="
	calls := []struct {
		name   string
		method string
		do     func(context.Context, *Client) error
	}{
		{"GetSecret", http.MethodGet, func(ctx context.Context, c *Client) error {
			_, err := c.GetSecret(ctx, repActions, "S")
			return err
		}},
		{"PutSecret", http.MethodPut, func(ctx context.Context, c *Client) error {
			created, err := c.PutSecret(ctx, repActions, "S", PutSecretBody{EncryptedValue: sealed, KeyID: "k1"})
			if err == nil && created {
				return errors.New("created = true")
			}
			return err
		}},
		{"DeleteSecret", http.MethodDelete, func(ctx context.Context, c *Client) error { return c.DeleteSecret(ctx, repActions, "S") }},
	}
	statuses := []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect}
	for _, call := range calls {
		for _, status := range statuses {
			for _, own := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s %d own client %v", call.name, status, own), func(t *testing.T) {
					f := newFake(t, func(r *http.Request) reply {
						if r.URL.Path == secretPathRepo {
							return reply{Status: status, Header: map[string]string{"Location": "/repositories/42/actions/secrets/S"},
								Body: `{"message":"Moved Permanently","url":"/repositories/42/actions/secrets/S"}`}
						}
						return reply{Status: http.StatusOK, Body: `{"name":"S"}`}
					})
					cfg := Config{BaseURL: f.URL}
					if own {
						cfg.HTTPClient = &http.Client{}
					}
					c := newClient(t, cfg)
					err := call.do(t.Context(), c)
					e, ok := errors.AsType[*Error](err)
					if !ok || e.StatusCode != status {
						t.Fatalf("err = %v, want a %d *Error", err, status)
					}
					if e.Method != call.method || !strings.Contains(e.Message, "follows no redirect") {
						t.Errorf("error %+v: want the method and a message saying no redirect is followed", e)
					}
					msg := err.Error() + fmt.Sprintf(" %#v", *e)
					if strings.Contains(msg, testToken) || strings.Contains(msg, sealed) || strings.Contains(msg, "repositories/42") {
						t.Errorf("error shows the token, the body or the Location: %s", msg)
					}
					hits := f.Hits()
					if len(hits) != 1 || hits[0].Method != call.method || hits[0].EscapedPath != secretPathRepo {
						t.Fatalf("requests %+v, want only the %s (no redirect followed, no retry)", hits, call.method)
					}
				})
			}
		}
	}
}

// The caller's http.Client is used as it is but for its CheckRedirect,
// and left as it was.
func TestRedirectLeavesTheCallersClient(t *testing.T) {
	f := newFake(t, func(r *http.Request) reply {
		if r.URL.Path == secretPathRepo {
			return reply{Status: http.StatusFound, Header: map[string]string{"Location": "/elsewhere"}}
		}
		return reply{Status: http.StatusOK, Body: `{"name":"MOVED"}`}
	})
	var asked int
	check := func(*http.Request, []*http.Request) error { asked++; return nil }
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	own := &http.Client{Transport: tr, CheckRedirect: check, Timeout: 7 * time.Second}
	c := newClient(t, Config{BaseURL: f.URL, HTTPClient: own})
	if _, err := c.GetSecret(t.Context(), repActions, "S"); err == nil {
		t.Fatal("GetSecret followed the redirect")
	}
	if asked != 0 || f.count("/elsewhere") != 0 {
		t.Errorf("the caller's CheckRedirect was asked %d times; /elsewhere got %d requests", asked, f.count("/elsewhere"))
	}
	if reflect.ValueOf(own.CheckRedirect).Pointer() != reflect.ValueOf(check).Pointer() ||
		own.Transport != tr || own.Timeout != 7*time.Second || own.Jar != nil {
		t.Errorf("the caller's http.Client was modified: %+v", own)
	}
}

func TestRedirectMessage(t *testing.T) {
	for _, tc := range []struct {
		status   int
		redirect bool
	}{{301, true}, {302, true}, {303, true}, {307, true}, {308, true}, {300, true}, {304, false}, {200, false}, {404, false}} {
		got := redirectMessage(tc.status)
		if want := fmt.Sprintf("GitHub redirected the request (%d);", tc.status); tc.redirect != strings.HasPrefix(got, want) || (!tc.redirect && got != "") {
			t.Errorf("redirectMessage(%d) = %q", tc.status, got)
		}
	}
}
