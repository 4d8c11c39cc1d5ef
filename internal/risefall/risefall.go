// Package risefall turns the outcomes of a repeated probe into a verdict with rise and fall
// thresholds (HAProxy's rise and fall, ALB's HealthyThresholdCount and UnhealthyThresholdCount):
// a target turns Up after Rise consecutive successes and Down after Fall consecutive failures, so
// a single failed probe among successes never turns it Down. It is the one such machine in
// outgrow: package health runs its checks through it, and package balancer its backends.
//
// A [Machine] holds one target's state and counters; a [Policy] holds the thresholds and the
// [Start] rule, shared by every target of a component and passed to [Machine.Record].
package risefall

// State is the verdict of a [Machine]. Its zero value is [Unknown].
type State uint8

// The states of a Machine.
const (
	// Unknown: no outcome has decided yet (none recorded, or, under [Counted], none of the
	// thresholds reached).
	Unknown State = iota
	// Up: the target works.
	Up
	// Down: the target does not work.
	Down
)

// String returns "unknown", "up" or "down".
func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Down:
		return "down"
	default:
		return "unknown"
	}
}

// Start is the rule a Machine follows until it has first been Up. Its zero value is [Counted].
type Start uint8

// The start rules.
const (
	// Counted applies the thresholds from the start: from Unknown, the Machine turns Up after
	// Rise consecutive successes and Down after Fall consecutive failures, and one that has never
	// been Up leaves Down after Rise consecutive successes like any other. Outcomes that
	// alternate before either threshold is reached keep it Unknown. No single outcome decides
	// more than the thresholds say, so nothing reports Up before Rise successes (the trap of
	// alexliesenfeld/health#31, which reported up before any success).
	Counted Start = iota
	// FirstResult lets the first outcome decide: from Unknown, a success turns the Machine Up
	// and a failure turns it Down at once; and until it has first been Up, a single success
	// turns it Up, so a target that was slow to come up is Up on its first success. Once it has
	// been Up, the thresholds apply. This is package health's rule for its background checks,
	// and a new ALB or Envoy target likewise needs one passing check to be healthy.
	FirstResult
)

// Policy is the thresholds and start rule that [Machine.Record] applies. The zero value means
// thresholds of 1 under [Counted]: every outcome decides at once. A Policy is a plain value, safe
// to share and copy.
type Policy struct {
	// Rise is the number of consecutive successes that turn a Machine Up (from Down, and from
	// Unknown under Counted). Below 1 it acts as 1.
	Rise int
	// Fall is the number of consecutive failures that turn an Up Machine Down (and an Unknown
	// one under Counted). Below 1 it acts as 1.
	Fall int
	// Start is the rule until the Machine has first been Up. Default: Counted.
	Start Start
}

// Machine is the rise/fall state of one target: its [State] and its consecutive successes and
// failures. The zero value is [Unknown] with no counts, ready to use; assigning the zero value
// starts it over. It is not safe for concurrent use: its owner guards it with its own lock.
// Copying a Machine copies its state.
type Machine struct {
	state      State
	everUp     bool // has been Up at least once; FirstResult's rule depends on it
	succ, fail int
}

// State returns the current verdict.
func (m *Machine) State() State { return m.state }

// Successes returns the number of consecutive successes recorded since the last failure; it is
// zero after a failure.
func (m *Machine) Successes() int { return m.succ }

// Failures returns the number of consecutive failures recorded since the last success; it is
// zero after a success.
func (m *Machine) Failures() int { return m.fail }

// Record records one outcome, ok for a success, under p and returns the state before and after
// it: from != to when the outcome changed the verdict. A success resets the failure count and a
// failure the success count. It never allocates.
func (m *Machine) Record(ok bool, p Policy) (from, to State) {
	from = m.state
	if ok {
		m.succ++
		m.fail = 0
		if m.succ >= p.Rise || (p.Start == FirstResult && !m.everUp) {
			m.state, m.everUp = Up, true
		}
	} else {
		m.fail++
		m.succ = 0
		if (m.state != Down && m.fail >= p.Fall) || (p.Start == FirstResult && m.state == Unknown) {
			m.state = Down
		}
	}
	return from, m.state
}
