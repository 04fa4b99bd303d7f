package server

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/staged-dev/staged/tasks"
)

func TestProblemFor(t *testing.T) {
	req, _ := http.NewRequest("GET", "/x", nil)
	tests := []struct {
		name         string
		err          error
		want         problem
		wantInternal bool
	}{
		{"invalid with field", &tasks.Error{Code: tasks.EINVALID, Field: "f", Message: "bad f"},
			problem{Type: problemTypeBase + "invalid-request", Title: "Bad Request", Status: 400, Detail: "bad f", Field: "f"}, false},
		{"wrapped conflict", fmt.Errorf("op: %w", tasks.Errorf(tasks.ECONFLICT, "finished")),
			problem{Type: problemTypeBase + "conflict", Title: "Conflict", Status: 409, Detail: "finished"}, false},
		{"rate limited", tasks.Errorf(tasks.ERATELIMITED, "slow down"),
			problem{Type: problemTypeBase + "rate-limited", Title: "Too Many Requests", Status: 429, Detail: "slow down"}, false},
		{"unauthorized", tasks.Errorf(tasks.EUNAUTHORIZED, "no key"),
			problem{Type: problemTypeBase + "unauthorized", Title: "Unauthorized", Status: 401, Detail: "no key"}, false},
		{"forbidden", tasks.Errorf(tasks.EFORBIDDEN, "not admin"),
			problem{Type: problemTypeBase + "forbidden", Title: "Forbidden", Status: 403, Detail: "not admin"}, false},
		{"too large", tasks.Errorf(tasks.ETOOLARGE, "big"),
			problem{Type: problemTypeBase + "too-large", Title: "Request Entity Too Large", Status: 413, Detail: "big"}, false},
		{"internal domain error hides its message", &tasks.Error{Code: tasks.EINTERNAL, Message: "secret", Err: errors.New("disk")},
			problem{Type: problemTypeBase + "internal", Title: "Internal Server Error", Status: 500, Detail: "internal error"}, true},
		{"plain error", errors.New("secret"),
			problem{Type: problemTypeBase + "internal", Title: "Internal Server Error", Status: 500, Detail: "internal error"}, true},
		{"unavailable", tasks.Errorf(tasks.EUNAVAILABLE, "redis down"),
			problem{Type: problemTypeBase + "unavailable", Title: "Service Unavailable", Status: 503, Detail: "redis down"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, internal := problemFor(tt.err, req)
			if got != tt.want || internal != tt.wantInternal {
				t.Errorf("got %+v internal=%v, want %+v internal=%v", got, internal, tt.want, tt.wantInternal)
			}
		})
	}
}
