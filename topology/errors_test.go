package topology

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestFieldError(t *testing.T) {
	tests := []struct {
		err  *FieldError
		want string
	}{
		{Invalid("domain.shards", "0", "must be between %d and %d", 1, 5), "domain.shards: must be between 1 and 5 (got 0)"},
		{Invalid("name", "", "required"), "name: required"},
		{&FieldError{Reason: "invalid YAML"}, "invalid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			wrapped := fmt.Errorf("create domain: %w", tt.err)
			if !errors.Is(wrapped, ErrInvalid) {
				t.Errorf("errors.Is(wrapped, ErrInvalid) = false")
			}
			if errors.Is(wrapped, errors.New("topology: invalid")) {
				t.Errorf("matches an unrelated error")
			}
		})
	}
}

func TestPrefix(t *testing.T) {
	for _, tt := range []struct {
		prefix, field, want string
	}{
		{"domain", "shards", "domain.shards"},
		{"ranges", "[2].to", "ranges[2].to"},
		{"domain", "", "domain"},
		{"", "shards", "shards"},
	} {
		got := withPrefix(tt.prefix, Invalid(tt.field, "", "x")).(*FieldError).Field
		if got != tt.want {
			t.Errorf("withPrefix(%q, %q) = %q, want %q", tt.prefix, tt.field, got, tt.want)
		}
	}
	plain := errors.New("plain")
	if withPrefix("x", plain) != plain {
		t.Errorf("withPrefix changed a non-field error")
	}
}

func TestQuoteTruncates(t *testing.T) {
	long := strings.Repeat("é", 100)
	q := quote(long)
	if len(q) > maxEcho+10 || !strings.HasSuffix(q, "…") {
		t.Errorf("quote(long) = %q", q)
	}
	if quote("a b") != `"a b"` {
		t.Errorf("quote(short) = %q", quote("a b"))
	}
}

func TestFileErrorFormat(t *testing.T) {
	tests := []struct {
		e    *FileError
		want string
	}{
		{&FileError{File: "t.yaml", Line: 3, Field: "domains[0].ttl", Err: Invalid("domains[0].ttl", "500ms", "too short")}, "t.yaml:3: domains[0].ttl: too short (got 500ms)"},
		{&FileError{File: "t.yaml", Line: 2, Err: &FieldError{Reason: "invalid YAML: x"}}, "t.yaml:2: invalid YAML: x"},
		{&FileError{File: "t.yaml", Err: &FieldError{Reason: "empty"}}, "t.yaml: empty"},
		{&FileError{File: "t.yaml", Line: 1, Field: "regions", Err: errors.New("boom")}, "t.yaml:1: regions: boom"},
		{&FileError{Field: "regions", Err: Invalid("regions", "", "required")}, "regions: required"},
		{&FileError{Line: 4, Field: "regions", Err: Invalid("regions", "", "required")}, "line 4: regions: required"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.e.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if !errors.Is(tt.e, tt.e.Err) {
				t.Errorf("does not unwrap to Err")
			}
		})
	}
}
