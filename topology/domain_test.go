package topology

import (
	"strings"
	"testing"
	"time"

	wdsv1 "github.com/wdsio/wds/proto/wds/v1"
)

func TestKind(t *testing.T) {
	tests := []struct {
		in   string
		want Kind
	}{
		{"unit", KindUnit},
		{"UNIT", KindUnit},
		{"Global", KindGlobal},
		{"regional", KindRegional},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseKind(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("ParseKind(%q) = %v, %v", tt.in, got, err)
			}
			if back, _ := ParseKind(got.String()); back != got {
				t.Errorf("String() %q does not parse back", got.String())
			}
			if KindFromProto(KindToProto(got)) != got {
				t.Errorf("proto round trip of %v failed", got)
			}
			var k Kind
			text, _ := got.MarshalText()
			if err := k.UnmarshalText(text); err != nil || k != got {
				t.Errorf("text round trip = %v, %v", k, err)
			}
		})
	}
	for _, bad := range []string{"", "units", "uniT ", "0", "unspecified"} {
		t.Run("bad "+bad, func(t *testing.T) {
			k, err := ParseKind(bad)
			wantFieldErr(t, err, "kind: ", "unit, global, regional")
			if bad != "" && !strings.Contains(err.Error(), quote(bad)) {
				t.Errorf("error %q does not echo the value", err)
			}
			if k != KindUnspecified {
				t.Errorf("kind = %v", k)
			}
		})
	}
	if s := Kind(9).String(); s != "Kind(9)" {
		t.Errorf("Kind(9).String() = %q", s)
	}
	if KindToProto(Kind(9)) != wdsv1.DomainKind_DOMAIN_KIND_UNSPECIFIED || KindFromProto(wdsv1.DomainKind(9)) != KindUnspecified {
		t.Errorf("unknown kinds must map to unspecified")
	}
}

func TestValidateName(t *testing.T) {
	ok := []string{"a", "orders", "us-east-1", "0day", "a.b_c-d", strings.Repeat("x", MaxNameLen)}
	for _, n := range ok {
		if err := ValidateName("name", n); err != nil {
			t.Errorf("ValidateName(%q) = %v", n, err)
		}
	}
	bad := []struct{ name, want string }{
		{"", "required"},
		{strings.Repeat("x", MaxNameLen+1), "too long: 64 characters"},
		{"Orders", "must start with a lowercase letter or digit"},
		{"-a", "must start with"},
		{".a", "must start with"},
		{"or ders", `invalid character ' ' at offset 2`},
		{"ordérs", "invalid character"},
		{"a/b", "invalid character '/'"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName("regions[1].name", tt.name)
			want := []string{"regions[1].name: ", tt.want}
			if tt.name != "" {
				want = append(want, "got "+quote(tt.name))
			}
			wantFieldErr(t, err, want...)
		})
	}
}

func TestValidateConsumerID(t *testing.T) {
	for _, id := range []string{"a", "Pod-7", "10.0.0.1:8080", "svc_a.b-c:d", strings.Repeat("Z", MaxConsumerIDLen)} {
		if err := ValidateConsumerID("id", id); err != nil {
			t.Errorf("ValidateConsumerID(%q) = %v", id, err)
		}
	}
	for _, tt := range []struct{ id, want string }{
		{"", "required"},
		{strings.Repeat("a", MaxConsumerIDLen+1), "too long: 129 characters"},
		{"a b", "invalid character ' ' at offset 1"},
		{"a/b", "invalid character '/'"},
		{"ü", "invalid character"},
		{"a\n", `invalid character '\n'`},
	} {
		t.Run(tt.id, func(t *testing.T) {
			wantFieldErr(t, ValidateConsumerID("hello.consumer_id", tt.id), "hello.consumer_id: ", tt.want)
		})
	}
}

func TestDomainValidate(t *testing.T) {
	valid := Domain{Name: "orders", Kind: KindGlobal, Shards: 64, TTL: 10 * time.Second}
	tests := []struct {
		name   string
		mutate func(*Domain)
		want   []string // empty: valid
	}{
		{"valid", func(*Domain) {}, nil},
		{"unit", func(d *Domain) { d.Kind, d.Shards = KindUnit, 1 }, nil},
		{"max shards", func(d *Domain) { d.Shards = MaxShards }, nil},
		{"min ttl", func(d *Domain) { d.TTL = MinTTL }, nil},
		{"max ttl", func(d *Domain) { d.TTL = MaxTTL }, nil},
		{"no name", func(d *Domain) { d.Name = "" }, []string{"name: required"}},
		{"bad name", func(d *Domain) { d.Name = "Orders" }, []string{"name: must start", `got "Orders"`}},
		{"no kind", func(d *Domain) { d.Kind = KindUnspecified }, []string{"kind: required: one of unit, global, regional"}},
		{"bad kind", func(d *Domain) { d.Kind = 7 }, []string{"kind: unknown kind", "got 7"}},
		{"no shards", func(d *Domain) { d.Shards = 0 }, []string{"shards: required for global domains"}},
		{"negative shards", func(d *Domain) { d.Shards = -1 }, []string{"shards: must be between 1 and 1048576", "got -1"}},
		{"too many shards", func(d *Domain) { d.Shards = MaxShards + 1 }, []string{"shards: must be between 1 and 1048576", "got 1048577"}},
		{"unit with 2", func(d *Domain) { d.Kind = KindUnit; d.Shards = 2 }, []string{"shards: must be 1 for a unit domain", "got 2"}},
		{"no ttl", func(d *Domain) { d.TTL = 0 }, []string{"ttl: must be between 1s and 24h0m0s", "got 0s"}},
		{"short ttl", func(d *Domain) { d.TTL = 500 * time.Millisecond }, []string{"ttl: must be between", "got 500ms"}},
		{"long ttl", func(d *Domain) { d.TTL = MaxTTL + time.Millisecond }, []string{"ttl: must be between", "got 24h0m0.001s"}},
		{"sub-millisecond ttl", func(d *Domain) { d.TTL = 1500500 * time.Microsecond }, []string{"ttl: must be a whole number of milliseconds", "got 1.5005s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := valid
			tt.mutate(&d)
			err := d.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantFieldErr(t, err, tt.want...)
		})
	}
}

func TestDomainNormalize(t *testing.T) {
	tests := []struct {
		in, want Domain
	}{
		{Domain{Kind: KindUnit}, Domain{Kind: KindUnit, Shards: 1, TTL: DefaultTTL}},
		{Domain{Kind: KindGlobal}, Domain{Kind: KindGlobal, TTL: DefaultTTL}},
		{Domain{Kind: KindUnit, Shards: 3, TTL: time.Minute}, Domain{Kind: KindUnit, Shards: 3, TTL: time.Minute}},
	}
	for _, tt := range tests {
		d := tt.in
		d.Normalize()
		if !d.Equal(tt.want) {
			t.Errorf("Normalize(%+v) = %+v, want %+v", tt.in, d, tt.want)
		}
	}
}

func TestDomainProto(t *testing.T) {
	t.Run("round trip", func(t *testing.T) {
		for _, d := range []Domain{
			{Name: "orders", Kind: KindGlobal, Shards: 64, TTL: 10 * time.Second},
			{Name: "leader", Kind: KindUnit, Shards: 1, TTL: 1500 * time.Millisecond},
			{Name: "carts", Kind: KindRegional, Shards: MaxShards, TTL: MaxTTL},
		} {
			p := DomainToProto(d)
			if p.GetTtlMillis() != d.TTL.Milliseconds() || int(p.GetShards()) != d.Shards {
				t.Errorf("DomainToProto(%+v) = %v", d, p)
			}
			back, err := DomainFromProto(p)
			if err != nil || !back.Equal(d) {
				t.Errorf("DomainFromProto = %+v, %v; want %+v", back, err, d)
			}
		}
	})
	t.Run("defaults", func(t *testing.T) {
		d, err := DomainFromProto(&wdsv1.Domain{Name: "leader", Kind: wdsv1.DomainKind_DOMAIN_KIND_UNIT})
		if err != nil || d.Shards != 1 || d.TTL != DefaultTTL {
			t.Errorf("DomainFromProto(minimal unit) = %+v, %v", d, err)
		}
	})
	t.Run("clamps", func(t *testing.T) {
		if p := DomainToProto(Domain{Shards: -5}); p.GetShards() != 0 {
			t.Errorf("negative shards became %d", p.GetShards())
		}
		if p := DomainToProto(Domain{Shards: 1 << 40}); p.GetShards() != 1<<32-1 {
			t.Errorf("huge shards became %d", p.GetShards())
		}
	})
	good := func() *wdsv1.Domain {
		return &wdsv1.Domain{Name: "orders", Kind: wdsv1.DomainKind_DOMAIN_KIND_GLOBAL, Shards: 8, TtlMillis: 2000}
	}
	tests := []struct {
		name   string
		p      *wdsv1.Domain
		mutate func(*wdsv1.Domain)
		want   []string
	}{
		{"nil", nil, nil, []string{"domain: required"}},
		{"name", good(), func(p *wdsv1.Domain) { p.Name = "a b" }, []string{"domain.name: invalid character", `got "a b"`}},
		{"kind unspecified", good(), func(p *wdsv1.Domain) { p.Kind = 0 }, []string{"domain.kind: required"}},
		{"kind unknown", good(), func(p *wdsv1.Domain) { p.Kind = 42 }, []string{"domain.kind: unknown kind", "got 42"}},
		{"shards missing", good(), func(p *wdsv1.Domain) { p.Shards = 0 }, []string{"domain.shards: required"}},
		{"shards too many", good(), func(p *wdsv1.Domain) { p.Shards = MaxShards + 1 }, []string{"domain.shards: must be between", "got 1048577"}},
		{"unit shards", good(), func(p *wdsv1.Domain) { p.Kind = wdsv1.DomainKind_DOMAIN_KIND_UNIT }, []string{"domain.shards: must be 1 for a unit domain", "got 8"}},
		{"ttl short", good(), func(p *wdsv1.Domain) { p.TtlMillis = 999 }, []string{"domain.ttl: must be between", "got 999ms"}},
		{"ttl negative", good(), func(p *wdsv1.Domain) { p.TtlMillis = -1 }, []string{"domain.ttl_millis: must be between 1000 and 86400000", "got -1"}},
		{"ttl overflow", good(), func(p *wdsv1.Domain) { p.TtlMillis = 1 << 62 }, []string{"domain.ttl_millis: must be between", "got 4611686018427387904"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mutate != nil {
				tt.mutate(tt.p)
			}
			_, err := DomainFromProto(tt.p)
			wantFieldErr(t, err, tt.want...)
		})
	}
}

func TestRangeProto(t *testing.T) {
	for _, r := range []Range{Full, {BoundOf(halfKey), End}, {Start, BoundOf(halfKey)}, {BoundOf(maxKey), End}} {
		p := RangeToProto(r)
		if len(p.GetFrom()) != 16 || (r.To.IsEnd() != (len(p.GetTo()) == 0)) {
			t.Errorf("RangeToProto(%v) = %x, %x", r, p.GetFrom(), p.GetTo())
		}
		back, err := RangeFromProto("range", p)
		if err != nil || back != r {
			t.Errorf("RangeFromProto(RangeToProto(%v)) = %v, %v", r, back, err)
		}
	}
	half := BoundOf(halfKey).Bytes()
	tests := []struct {
		name string
		p    *wdsv1.KeyRange
		want []string
	}{
		{"nil", nil, []string{"grant.range: required"}},
		{"from empty", &wdsv1.KeyRange{}, []string{"grant.range.from: must be exactly 16 bytes", "got 0 bytes"}},
		{"from short", &wdsv1.KeyRange{From: []byte{1, 2}}, []string{"grant.range.from:", "got 2 bytes"}},
		{"to short", &wdsv1.KeyRange{From: half, To: []byte{1}}, []string{"grant.range.to: must be 16 bytes", "got 1 byte"}},
		{"to before from", &wdsv1.KeyRange{From: half, To: Start.Bytes()}, []string{"grant.range.to: must be after from 80000000-", "got 00000000-"}},
		{"empty range", &wdsv1.KeyRange{From: half, To: half}, []string{"grant.range.to: must be after from"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RangeFromProto("grant.range", tt.p)
			wantFieldErr(t, err, tt.want...)
		})
	}
}
