package risefall_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/risefall"
)

// states maps the letters of the tables to states: '?' Unknown, 'U' Up, 'D' Down.
var states = map[byte]risefall.State{'?': risefall.Unknown, 'U': risefall.Up, 'D': risefall.Down}

// trailingRun returns the length of the run of equal outcomes that ends seq[i].
func trailingRun(seq string, i int) int {
	n := 1
	for i-n >= 0 && seq[i-n] == seq[i] {
		n++
	}
	return n
}

func TestRecord(t *testing.T) {
	health := risefall.Policy{Rise: 2, Fall: 3, Start: risefall.FirstResult}
	counted := risefall.Policy{Rise: 2, Fall: 3}
	tests := []struct {
		name string
		p    risefall.Policy
		seq  string // 'S' success, 'F' failure
		want string // the state after each outcome
	}{
		// FirstResult, health's rule: the first outcome decides, the first success ever is Up.
		{"first/nothing recorded", health, "", ""},
		{"first/success from unknown", health, "S", "U"},
		{"first/failure from unknown", health, "F", "D"},
		{"first/never up: first success", health, "FFFFS", "DDDDU"},
		{"first/never up: success after one failure", health, "FS", "DU"},
		{"first/up then fall after 3", health, "SFFF", "UUUD"},
		{"first/up then rise after 2", health, "SFFFSS", "UUUDDU"},
		{"first/up then a success breaks the fall", health, "SFFSFFF", "UUUUUUD"},
		{"first/flap while up never falls", health, "SFSFSFFSFFSF", "UUUUUUUUUUUU"},
		{"first/flap while down never rises", health, "SFFFSFSFSF", "UUUDDDDDDD"},
		{"first/down again needs rise", health, "FSFFFSS", "DUUUDDU"},
		{"first/successes while up stay up", health, "SSSSS", "UUUUU"},
		{"first/failures while down stay down", health, "SFFFFFF", "UUUDDDD"},

		// Counted: the thresholds apply from Unknown too.
		{"counted/one success stays unknown", counted, "S", "?"},
		{"counted/rise from unknown", counted, "SS", "?U"},
		{"counted/fall from unknown", counted, "FFF", "??D"},
		{"counted/flap from unknown never decides", counted, "SFSFFSFFSFS", "???????????"},
		{"counted/a failure resets the rise", counted, "SFSS", "???U"},
		{"counted/a success resets the fall", counted, "FFSFFF", "?????D"},
		{"counted/up then fall after 3", counted, "SSFFF", "?UUUD"},
		{"counted/down then rise after 2", counted, "FFFSFSS", "??DDDDU"},
		{"counted/up, a blip, up", counted, "SSFFSFFF", "?UUUUUUD"},

		// Thresholds of 1: every outcome decides, under either rule.
		{"first/thresholds 1", risefall.Policy{Rise: 1, Fall: 1, Start: risefall.FirstResult}, "SFFSFS", "UDDUDU"},
		{"counted/thresholds 1", risefall.Policy{Rise: 1, Fall: 1}, "SFFSFS", "UDDUDU"},
		{"zero policy acts as thresholds 1", risefall.Policy{}, "FSSFSF", "DUUDUD"},
		{"thresholds below 1 act as 1", risefall.Policy{Rise: -2, Fall: 0}, "SFSF", "UDUD"},

		// One threshold of 1, the other not.
		{"counted/rise 3 fall 1", risefall.Policy{Rise: 3, Fall: 1}, "SSFSSS", "??DDDU"},
		{"counted/rise 1 fall 2", risefall.Policy{Rise: 1, Fall: 2}, "FFSFSFF", "?DUUUUD"},
		{"first/rise 3 fall 1", risefall.Policy{Rise: 3, Fall: 1, Start: risefall.FirstResult}, "SFSSS", "UDDDU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Len(t, tt.want, len(tt.seq), "bad table row")
			var m risefall.Machine
			prev := risefall.Unknown
			for i := range len(tt.seq) {
				ok := tt.seq[i] == 'S'
				want := states[tt.want[i]]
				from, to := m.Record(ok, tt.p)
				require.Equal(t, prev, from, "from, after %q", tt.seq[:i+1])
				require.Equal(t, want, to, "to, after %q", tt.seq[:i+1])
				require.Equal(t, want, m.State(), "State, after %q", tt.seq[:i+1])
				succ, fail := 0, trailingRun(tt.seq, i)
				if ok {
					succ, fail = fail, 0
				}
				require.Equal(t, succ, m.Successes(), "Successes, after %q", tt.seq[:i+1])
				require.Equal(t, fail, m.Failures(), "Failures, after %q", tt.seq[:i+1])
				prev = want
			}
		})
	}
}

func TestZeroValue(t *testing.T) {
	var m risefall.Machine
	assert.Equal(t, risefall.Unknown, m.State())
	assert.Zero(t, m.Successes())
	assert.Zero(t, m.Failures())
	assert.Equal(t, risefall.Counted, risefall.Policy{}.Start)
}

func TestStartOver(t *testing.T) {
	p := risefall.Policy{Rise: 2, Fall: 3, Start: risefall.FirstResult}
	var m risefall.Machine
	m.Record(true, p)
	m.Record(false, p)
	m = risefall.Machine{}
	assert.Equal(t, risefall.Unknown, m.State())
	_, to := m.Record(false, p)
	assert.Equal(t, risefall.Down, to, "after starting over, the first outcome decides again")
	_, to = m.Record(true, p)
	assert.Equal(t, risefall.Up, to, "after starting over, the first success is Up again")
}

func TestStateString(t *testing.T) {
	assert.Equal(t, "unknown", risefall.Unknown.String())
	assert.Equal(t, "up", risefall.Up.String())
	assert.Equal(t, "down", risefall.Down.String())
	assert.Equal(t, "unknown", risefall.State(9).String())
}

func TestRecordDoesNotAllocate(t *testing.T) {
	p := risefall.Policy{Rise: 2, Fall: 3, Start: risefall.FirstResult}
	var m risefall.Machine
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		m.Record(i%5 != 0, p)
	})
	assert.Zero(t, allocs)
}
