package queue

// jobHeap is a binary heap of jobs that knows where each job is, so that a job can be removed
// or moved when its key changes. A job is in one jobHeap at most: its idx is its position there.
type jobHeap struct {
	items []*memJob
	less  func(a, b *memJob) bool
}

// holds reports whether j is in h.
func (h *jobHeap) holds(j *memJob) bool {
	return j.idx >= 0 && j.idx < len(h.items) && h.items[j.idx] == j
}

func (h *jobHeap) push(j *memJob) {
	j.idx = len(h.items)
	h.items = append(h.items, j)
	h.up(j.idx)
}

// pop removes and returns the first job. h is not empty.
func (h *jobHeap) pop() *memJob {
	j := h.items[0]
	h.remove(j)
	return j
}

// remove takes j out of h. h holds j.
func (h *jobHeap) remove(j *memJob) {
	i, last := j.idx, len(h.items)-1
	if i != last {
		h.swap(i, last)
	}
	h.items[last] = nil
	h.items = h.items[:last]
	j.idx = -1
	if i != last {
		h.fixAt(i)
	}
}

// fix restores the order after j's key changed. h holds j.
func (h *jobHeap) fix(j *memJob) { h.fixAt(j.idx) }

func (h *jobHeap) fixAt(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *jobHeap) swap(i, k int) {
	h.items[i], h.items[k] = h.items[k], h.items[i]
	h.items[i].idx, h.items[k].idx = i, k
}

func (h *jobHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(h.items[i], h.items[p]) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

// down moves the job at i down to its place and reports whether it moved.
func (h *jobHeap) down(i int) bool {
	start, n := i, len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && h.less(h.items[r], h.items[l]) {
			c = r
		}
		if !h.less(h.items[c], h.items[i]) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}
