package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/hibiken/asynq"
)

// evilPage is a page on another site that makes the visitor's browser
// pause the dashboard's queue: a form that submits itself.
const evilPage = `<!doctype html><title>cute cats</title>
<form method="POST" action="%s/monitoring/api/queues/%s:pause"><input type="hidden" name="x" value="1"></form>
<script>document.forms[0].submit()</script>`

// TestBrowserDashboardCSRF: with STAGED_MONITORING_WRITE=1, a page on
// another origin that auto-submits a form to the dashboard's pause
// endpoint must not pause the queue; the dashboard's own page still can.
func TestBrowserDashboardCSRF(t *testing.T) {
	t.Parallel()
	binary(t)
	b := startBrowser(t)
	s := newStack(t, false)
	s.startAPI("STAGED_MONITORING_WRITE=1")
	s.submit(`{"type":"sleep","input":{"stages":1,"ms":1}}`) // asynq knows the queue now
	q := builtinQueue("default", "sleep")                    // sleep's asynq queue on default
	insp := asynq.NewInspectorFromRedisClient(s.rdb)
	paused := func() bool {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatalf("queue info: %v", err)
		}
		return info.Paused
	}

	// The other site: another host name and port (localhost, not 127.0.0.1).
	evil := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, evilPage, s.baseURL, q)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	evil.Listener = ln
	evil.Start()
	t.Cleanup(evil.Close)
	evilURL := "http://localhost:" + strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:") + "/"

	ctx, cancel := context.WithTimeout(b.ctx, pageLimit)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(evilURL)); err != nil {
		t.Fatalf("open the other site: %v", err)
	}
	// The form posts itself: wait until the browser shows the answer (a
	// successful pause answers 204, which leaves the page as it was).
	var shown string
	waitFor(t, pageLimit, "the auto-submitted form to be answered", func() (bool, string) {
		if paused() {
			return true, "paused"
		}
		href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + " " + document.readyState + " " + (document.body ? document.body.innerText : "")`))
		if err != nil {
			return false, err.Error()
		}
		shown = href
		return strings.HasPrefix(href, s.baseURL+"/monitoring/api/queues/"+q+":pause complete"), href
	})
	t.Logf("the browser shows: %.300s", shown)
	if paused() {
		t.Fatalf("a form on another origin paused the queue (cross-site request forgery); the browser shows %.300s", shown)
	}
	if !strings.Contains(shown, "403") {
		t.Errorf("the forged request was not answered 403: %.300s", shown)
	}

	// The dashboard's own page may pause it.
	if err := chromedp.Do(ctx, chromedp.Navigate(s.baseURL+"/monitoring/")); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/monitoring/api/queues/`+q+`:pause", {method: "POST"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("pause from the dashboard's page: %v", err)
	}
	if status >= 300 || !paused() {
		t.Fatalf("the dashboard's own page could not pause the queue: status %d, paused %v", status, paused())
	}
}
