package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lameduck/lameduck/core"
)

func TestWork(t *testing.T) {
	cases := []struct {
		name, method, target string
		status               int
		body                 string
	}{
		{"get", http.MethodGet, "/work?ms=0", http.StatusOK, "ok\n"},
		{"post_waits", http.MethodPost, "/work?ms=5", http.StatusOK, "ok\n"},
		{"missing_ms", http.MethodGet, "/work", http.StatusBadRequest, ""},
		{"negative_ms", http.MethodGet, "/work?ms=-1", http.StatusBadRequest, ""},
		{"bad_ms", http.MethodGet, "/work?ms=x", http.StatusBadRequest, ""},
		{"put", http.MethodPut, "/work?ms=0", http.StatusMethodNotAllowed, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			work(rec, httptest.NewRequestWithContext(t.Context(), tc.method, tc.target, nil))
			if rec.Code != tc.status {
				t.Errorf("status: got %d, want %d", rec.Code, tc.status)
			}
			if tc.body != "" && rec.Body.String() != tc.body {
				t.Errorf("body: got %q, want %q", rec.Body.String(), tc.body)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"drained", nil, backendDrained},
		{"drain_timeout", &core.ForcedError{Abandoned: 1, Cause: core.ErrDrainTimeout}, backendForced},
		{"second_signal", &core.ForcedError{Cause: fmt.Errorf("%w SIGTERM", core.ErrSecondSignal)}, backendSignal},
		{"server_failed", errors.New("x"), backendFailure},
		{"server_failed_and_forced", errors.Join(errors.New("x"), &core.ForcedError{Cause: core.ErrDrainTimeout}), backendFailure},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(tc.err); got != tc.want {
				t.Errorf("exitCode(%v): got %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

func TestLogWatchHeld(t *testing.T) {
	var logs strings.Builder
	w := &logWatch{logs: &logs}
	// Written in pieces that split lines, as a pipe may deliver them.
	in := "time=x level=INFO msg=\"lameduck: holding\" hold=1s hold_quiet=300ms\n" +
		"time=x level=INFO msg=\"lameduck: hold ended\" held=1.734s ended_by=quiet last_new_traffic_before_end=300ms\n"
	for i := 0; i < len(in); i += 7 {
		if _, err := w.Write([]byte(in[i:min(i+7, len(in))])); err != nil {
			t.Fatal(err)
		}
	}
	if w.held != 1734*time.Millisecond {
		t.Errorf("held: got %v, want 1.734s", w.held)
	}
	if logs.String() != in {
		t.Errorf("logs: got %q, want everything passed on", logs.String())
	}
}
