package frontier

import "github.com/chorus-kv/chorus/crdt"

// minSet is a multiset of frontiers (one per counted member) that answers
// its minimum: a count per distinct value and a min-heap of the values.
// A value whose count drops to zero stays in the heap until it reaches the
// top (lazy deletion); the heap is rebuilt from the counts when it holds
// more than twice as many entries as there are distinct values, so it
// stays within O(distinct values). Add and remove cost O(log distinct
// values), min O(1) amortized.
type minSet struct {
	count map[crdt.Timestamp]int
	heap  []crdt.Timestamp
}

func (s *minSet) add(v crdt.Timestamp) {
	if s.count == nil {
		s.count = map[crdt.Timestamp]int{}
	}
	s.count[v]++
	if s.count[v] == 1 {
		s.heap = append(s.heap, v)
		s.up(len(s.heap) - 1)
	}
}

func (s *minSet) remove(v crdt.Timestamp) {
	switch c := s.count[v]; {
	case c > 1:
		s.count[v] = c - 1
	case c == 1:
		delete(s.count, v)
		if len(s.heap) > 2*len(s.count)+16 {
			s.rebuild()
		}
	}
}

// move replaces one old with v.
func (s *minSet) move(old, v crdt.Timestamp) {
	if old != v {
		s.remove(old)
		s.add(v)
	}
}

// min returns the lowest value, 0 when the set is empty.
func (s *minSet) min() crdt.Timestamp {
	for len(s.heap) > 0 && s.count[s.heap[0]] == 0 {
		n := len(s.heap) - 1
		s.heap[0] = s.heap[n]
		s.heap = s.heap[:n]
		s.down(0)
	}
	if len(s.heap) == 0 {
		return 0
	}
	return s.heap[0]
}

func (s *minSet) rebuild() {
	s.heap = s.heap[:0]
	for v := range s.count {
		s.heap = append(s.heap, v)
	}
	for i := len(s.heap)/2 - 1; i >= 0; i-- {
		s.down(i)
	}
}

func (s *minSet) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if s.heap[p] <= s.heap[i] {
			return
		}
		s.heap[p], s.heap[i] = s.heap[i], s.heap[p]
		i = p
	}
}

func (s *minSet) down(i int) {
	n := len(s.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && s.heap[r] < s.heap[l] {
			m = r
		}
		if s.heap[i] <= s.heap[m] {
			return
		}
		s.heap[i], s.heap[m] = s.heap[m], s.heap[i]
		i = m
	}
}
