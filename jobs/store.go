package jobs

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The store is one bbolt file: every write is a transaction fsynced before it returns,
// so what Submit acknowledged survives a crash or a power cut. Buckets:
//
//	jobs      id -> Record (JSON)
//	results   id -> storedResult (JSON), for done jobs
//	requests  id -> storedRequest (JSON), for unfinished jobs marked retry
//	order     seq (8 bytes, big endian) -> id: submission order
//	idem      idempotency key -> id
var (
	bktJobs     = []byte("jobs")
	bktResults  = []byte("results")
	bktRequests = []byte("requests")
	bktOrder    = []byte("order")
	bktIdem     = []byte("idem")
)

type store struct {
	db *bolt.DB
}

func openStore(path string) (*store, error) {
	// The file lock makes a second daemon on the same state dir fail instead of sharing.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open job store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bktJobs, bktResults, bktRequests, bktOrder, bktIdem} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("job store %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

func seqKey(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func getRecord(tx *bolt.Tx, id string) (Record, error) {
	var rec Record
	b := tx.Bucket(bktJobs).Get([]byte(id))
	if b == nil {
		return rec, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("job %s: corrupt record: %w", id, err)
	}
	return rec, nil
}

func putRecord(tx *bolt.Tx, rec *Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.Bucket(bktJobs).Put([]byte(rec.ID), b)
}

// create stores a new job. With an idempotency key already known, it stores nothing
// and returns the existing job's record and false.
func (s *store) create(rec *Record, req *storedRequest) (existing *Record, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		if rec.IdempotencyKey != "" {
			if id := tx.Bucket(bktIdem).Get([]byte(rec.IdempotencyKey)); id != nil {
				old, err := getRecord(tx, string(id))
				if err == nil {
					existing = &old
					return nil
				}
				if !errors.Is(err, ErrNotFound) {
					return err
				}
			}
			if err := tx.Bucket(bktIdem).Put([]byte(rec.IdempotencyKey), []byte(rec.ID)); err != nil {
				return err
			}
		}
		order := tx.Bucket(bktOrder)
		seq, err := order.NextSequence()
		if err != nil {
			return err
		}
		rec.Seq = seq
		if err := order.Put(seqKey(seq), []byte(rec.ID)); err != nil {
			return err
		}
		if req != nil {
			b, err := json.Marshal(req)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bktRequests).Put([]byte(rec.ID), b); err != nil {
				return err
			}
		}
		return putRecord(tx, rec)
	})
	return existing, err
}

// update changes a job's record in place; f sees the stored one.
func (s *store) update(id string, f func(*Record)) (Record, error) {
	var rec Record
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if rec, err = getRecord(tx, id); err != nil {
			return err
		}
		f(&rec)
		return putRecord(tx, &rec)
	})
	return rec, err
}

// finish stores a job's final record and its result (nil for a lost job), and drops
// its stored request. It returns the result's size in bytes.
func (s *store) finish(rec *Record, res *storedResult) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		if res != nil {
			b, err := json.Marshal(res)
			if err != nil {
				return err
			}
			n = len(b)
			if err := tx.Bucket(bktResults).Put([]byte(rec.ID), b); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bktRequests).Delete([]byte(rec.ID)); err != nil {
			return err
		}
		return putRecord(tx, rec)
	})
	return n, err
}

// get loads a job's record and, when it is done, its result.
func (s *store) get(id string) (Record, error) {
	var rec Record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if rec, err = getRecord(tx, id); err != nil {
			return err
		}
		if b := tx.Bucket(bktResults).Get([]byte(id)); b != nil {
			var sr storedResult
			if err := json.Unmarshal(b, &sr); err != nil {
				return fmt.Errorf("job %s: corrupt result: %w", id, err)
			}
			rec.Result = sr.result()
		}
		return nil
	})
	return rec, err
}

// request loads the stored request of a job marked retry.
func (s *store) request(id string) (*storedRequest, error) {
	var req *storedRequest
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktRequests).Get([]byte(id))
		if b == nil {
			return nil
		}
		req = &storedRequest{}
		return json.Unmarshal(b, req)
	})
	return req, err
}

// list returns up to limit records in submission order, those after the job named
// after (which must exist), in state (any when ""), without results. more says
// whether there are others past the last.
func (s *store) list(state State, limit int, after string) (out []Record, more bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktOrder).Cursor()
		k, v := c.First()
		if after != "" {
			rec, err := getRecord(tx, after)
			if err != nil {
				return err
			}
			k, v = c.Seek(seqKey(rec.Seq + 1))
		}
		for ; k != nil; k, v = c.Next() {
			rec, err := getRecord(tx, string(v))
			if err != nil {
				continue // dropped between the two buckets' writes: never, but skip
			}
			if state != "" && rec.State != state {
				continue
			}
			if len(out) == limit {
				more = true
				return nil
			}
			out = append(out, rec)
		}
		return nil
	})
	return out, more, err
}

// all calls f with every record, in submission order.
func (s *store) all(f func(Record)) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktOrder).ForEach(func(_, v []byte) error {
			if rec, err := getRecord(tx, string(v)); err == nil {
				f(rec)
			}
			return nil
		})
	})
}

// stats counts the records and the bytes of stored results.
func (s *store) stats() (count int, bytes int64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		count = tx.Bucket(bktJobs).Stats().KeyN
		return tx.Bucket(bktResults).ForEach(func(_, v []byte) error {
			bytes += int64(len(v))
			return nil
		})
	})
	return count, bytes, err
}

// prune drops finished jobs, oldest first: those finished before cutoff, then as many
// as it takes to bring the count to maxCount and the results' bytes to maxBytes.
// Unfinished jobs are never dropped. It returns how many records and result bytes it
// dropped.
func (s *store) prune(cutoff time.Time, count, maxCount int, bytes, maxBytes int64) (dropped int, freed int64, err error) {
	// Found in a read transaction: most calls find nothing, and cost no write.
	var victims []Record
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktOrder).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			over := count-dropped > maxCount || bytes-freed > maxBytes
			rec, err := getRecord(tx, string(v))
			if err != nil {
				continue
			}
			if !over && rec.Submitted.After(cutoff) {
				break // later ones were submitted later still: none finished before cutoff
			}
			if !rec.State.Final() || (!over && rec.Finished.After(cutoff)) {
				continue
			}
			freed += int64(len(tx.Bucket(bktResults).Get([]byte(rec.ID))))
			victims = append(victims, rec)
			dropped++
		}
		return nil
	})
	if err != nil || len(victims) == 0 {
		return 0, 0, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		for _, rec := range victims {
			id := []byte(rec.ID)
			if err := tx.Bucket(bktOrder).Delete(seqKey(rec.Seq)); err != nil {
				return err
			}
			for _, b := range [][]byte{bktResults, bktRequests, bktJobs} {
				if err := tx.Bucket(b).Delete(id); err != nil {
					return err
				}
			}
			if rec.IdempotencyKey != "" {
				if err := tx.Bucket(bktIdem).Delete([]byte(rec.IdempotencyKey)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return dropped, freed, nil
}
