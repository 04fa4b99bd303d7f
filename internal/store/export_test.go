package store

// QueuedWrites returns how many requests wait in s's combiner for a
// sender (tests).
func QueuedWrites(s *Store) int {
	if c := s.comb.Load(); c != nil {
		return len(c.reqs)
	}
	return 0
}
