package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Limits of the browser test.
const (
	browserStartLimit = 30 * time.Second // Chromium up, the first page loaded
	pageLimit         = 30 * time.Second // the job page shows the finished job
)

// chromiumPath returns the Chromium (or Chrome) binary to drive:
// $STAGED_E2E_CHROMIUM if set, else the first of the usual names on PATH.
func chromiumPath() string {
	if p := os.Getenv("STAGED_E2E_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// pageState is what the job page shows, read from its DOM.
type pageState struct {
	Hidden   bool     `json:"hidden"`   // #job is hidden (not rendered yet, or not found)
	State    string   `json:"state"`    // the badge's data-state
	Stages   []string `json:"stages"`   // each stage's data-state
	Running  string   `json:"running"`  // data-index of the running stage, "" if none
	Label    string   `json:"label"`    // the stage label under the bar
	Percent  string   `json:"percent"`  // the bar's aria-valuenow
	PctText  string   `json:"pctText"`  // the text next to the bar
	Width    string   `json:"width"`    // the bar's style width
	Result   string   `json:"result"`   // the result box's text
	Conn     string   `json:"conn"`     // the connection indicator's data-conn
	NotFound bool     `json:"notFound"` // the not-found section is shown
}

const readPage = `(() => {
  const $ = (id) => document.getElementById(id);
  const stages = [...document.querySelectorAll("#stages li")];
  const run = stages.find((li) => li.dataset.state === "running");
  return {
    hidden: $("job").hidden,
    state: $("state").dataset.state || "",
    stages: stages.map((li) => li.dataset.state || ""),
    running: run ? run.dataset.index : "",
    label: $("stage-label").textContent,
    percent: $("progress").getAttribute("aria-valuenow") || "",
    pctText: $("progress-label").textContent,
    width: $("progress-bar").style.width,
    result: $("result").textContent,
    conn: $("conn").dataset.conn || "",
    notFound: !$("notfound").hidden,
  };
})()`

func (p pageState) String() string {
	return fmt.Sprintf("state=%s stages=%v running=%q label=%q progress=%s/%s/%s conn=%s hidden=%v",
		p.State, p.Stages, p.Running, p.Label, p.Percent, p.PctText, p.Width, p.Conn, p.Hidden)
}

// browser is a headless Chromium with one tab, and the errors its pages
// reported.
type browser struct {
	ctx context.Context

	mu       sync.Mutex
	problems []string // exceptions, console errors, CSP violations
}

// startBrowser starts a headless Chromium with a fresh profile; it skips
// the test when none is installed.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	exe := chromiumPath()
	if exe == "" {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		// Without these, Chromium's own connections (updates, sync, QUIC
		// probes) are refused on a closed network, which slows it down.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1000, 1250),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	b := &browser{ctx: ctx}

	// The first Run starts the browser, which lives as long as the context
	// of that Run: it gets no timeout of its own, the wait for it does.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx, chromedp.Navigate("about:blank")) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting %s: %v", exe, err)
		}
	case <-time.After(browserStartLimit):
		cancelCtx()
		t.Fatalf("%s did not start within %v", exe, browserStartLimit)
	}
	if ua, err := chromedp.Run(ctx, chromedp.Evaluate[string](`navigator.userAgent`)); err == nil {
		t.Logf("browser: %s (%s)", exe, ua)
	}

	// Keep the errors of every page from now on: exceptions, console.error,
	// and error entries of the browser log (CSP violations, failed loads).
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				b.mu.Lock()
				b.problems = append(b.problems, fmt.Sprintf("%s (%s)", m, m.URL))
				b.mu.Unlock()
			}
		}
	}()
	return b
}

func (b *browser) consoleProblems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.problems)
}

// read returns what the page shows now.
func (b *browser) read(ctx context.Context) (pageState, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[pageState](readPage))
}

// screenshot saves a full-page PNG as name in a temporary directory, and
// in $STAGED_E2E_SCREENSHOTS when that is set.
func (b *browser) screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	dirs := []string{t.TempDir()}
	if d := os.Getenv("STAGED_E2E_SCREENSHOTS"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Errorf("screenshot: %v", err)
			continue
		}
		f := filepath.Join(d, name)
		if err := os.WriteFile(f, png, 0o644); err != nil {
			t.Errorf("screenshot: %v", err)
			continue
		}
		t.Logf("screenshot: %s (%d bytes)", f, len(png))
	}
}

// TestBrowserJobPage opens the job page of a 4-stage sleep job in headless
// Chromium and watches it through the DOM: the stages advance live (at
// least two different running stages are seen), then every stage and the
// job are succeeded, the bar is at 100% and the result is shown, with no
// script error or blocked resource on the console. A page opened after the
// job finished shows the same; an unknown job's page says not found.
func TestBrowserJobPage(t *testing.T) {
	t.Parallel()
	binary(t)
	b := startBrowser(t)
	s := newStack(t, false)
	s.startAPI()
	s.startWorker()

	// Submit only now that the browser is up, so the page opens while the
	// job is at its start.
	id := s.submit(`{"type":"sleep","input":{"stages":4,"ms":700}}`).ID
	ctx, cancel := context.WithTimeout(b.ctx, pageLimit)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(s.baseURL+"/jobs/"+id)); err != nil {
		t.Fatalf("open /jobs/%s: %v", id, err)
	}

	running := map[string]bool{} // running stage indexes seen
	var order []string
	var last pageState
	var states []string // distinct page states seen, for the log
	for {
		p, err := b.read(ctx)
		if err != nil {
			t.Fatalf("reading the page (last seen %v): %v", last, err)
		}
		if p.Running != "" && !running[p.Running] {
			running[p.Running] = true
			order = append(order, p.Running)
			if len(order) == 2 {
				b.screenshot(t, ctx, "jobpage-running.png")
			}
		}
		if str := p.String(); len(states) == 0 || states[len(states)-1] != str {
			states = append(states, str)
		}
		last = p
		if p.State == "succeeded" || p.State == "failed" || p.State == "canceled" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the page did not show the job finished within %v; last: %v", pageLimit, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Logf("the page went through %d states; running stages seen in order %v", len(states), order)
	if len(running) < 2 {
		t.Errorf("the page showed running stages %v, want at least two different ones (it must update live)", order)
	}
	if !slices.IsSorted(order) {
		t.Errorf("the running stage went backwards on the page: %v", order)
	}

	// The final page, once the bar's transition has settled: wait for it
	// on the DOM.
	want := func(p pageState) bool {
		return p.State == "succeeded" && slices.Equal(p.Stages, []string{"succeeded", "succeeded", "succeeded", "succeeded"}) &&
			p.Percent == "100" && p.PctText == "100%" && p.Width == "100%" && p.Running == "" && p.Label == "succeeded" &&
			strings.Contains(p.Result, `"slept_ms": 700`) && p.Conn == "closed" && !p.Hidden
	}
	if !want(last) {
		waitFor(t, 5*time.Second, "the page to show the job succeeded", func() (bool, string) {
			p, err := b.read(ctx)
			if err != nil {
				return false, err.Error()
			}
			last = p
			return want(p), p.String() + " result=" + p.Result
		})
	}
	settle(ctx)
	b.screenshot(t, ctx, "jobpage-succeeded.png")

	// A page opened after the job finished renders the final record.
	if err := chromedp.Do(ctx, chromedp.Navigate(s.baseURL+"/jobs/"+id)); err != nil {
		t.Fatalf("reopen /jobs/%s: %v", id, err)
	}
	waitFor(t, 10*time.Second, "the reopened page to show the job succeeded", func() (bool, string) {
		p, err := b.read(ctx)
		if err != nil {
			return false, err.Error()
		}
		return want(p), p.String()
	})

	// An unknown job's page says so.
	if err := chromedp.Do(ctx, chromedp.Navigate(s.baseURL+"/jobs/0b6c0b6c-0b6c-4b6c-8b6c-0b6c0b6c0b6c")); err != nil {
		t.Fatalf("open an unknown job's page: %v", err)
	}
	waitFor(t, 10*time.Second, "the page of an unknown job to say not found", func() (bool, string) {
		p, err := b.read(ctx)
		if err != nil {
			return false, err.Error()
		}
		return p.NotFound && p.Hidden && p.Conn == "closed", p.String()
	})

	for _, m := range b.consoleProblems() {
		// The unknown job's stream answers 404, which Chromium logs.
		if strings.Contains(m, "0b6c0b6c-0b6c-4b6c-8b6c-0b6c0b6c0b6c") && strings.Contains(m, "404") {
			continue
		}
		t.Errorf("browser console: %s", m)
	}
}

// settle waits for the page's CSS transitions (the bar's width, 0.4s) to
// end, so that a screenshot shows the final state: on a condition, the
// document having no running animation.
func settle(ctx context.Context) {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.getAnimations().filter(a => a.playState === "running" && !(a instanceof CSSAnimation)).length`))
		if err != nil || n == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitPage polls the page every 50 ms until cond holds, for at most limit.
func (b *browser) waitPage(t *testing.T, ctx context.Context, limit time.Duration, what string, cond func(pageState) bool) pageState {
	t.Helper()
	var last pageState
	waitFor(t, limit, what, func() (bool, string) {
		p, err := b.read(ctx)
		if err != nil {
			return false, err.Error()
		}
		last = p
		return cond(p), p.String()
	})
	return last
}

// TestBrowserJobPageReconnect kills the API process (SIGKILL) while the
// job page follows a running job, and starts it again on the same port:
// the page says it is reconnecting, then resumes its stream and ends
// showing the job succeeded with every stage done.
func TestBrowserJobPageReconnect(t *testing.T) {
	t.Parallel()
	binary(t)
	b := startBrowser(t)
	s := newStack(t, false)
	apiProc := s.startAPI()
	s.startWorker()
	addr := strings.TrimPrefix(s.baseURL, "http://")

	id := s.submit(`{"type":"sleep","input":{"stages":5,"ms":800}}`).ID
	ctx, cancel := context.WithTimeout(b.ctx, pageLimit)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(s.baseURL+"/jobs/"+id)); err != nil {
		t.Fatalf("open /jobs/%s: %v", id, err)
	}
	b.waitPage(t, ctx, 20*time.Second, "the page to show stage 2 running, live", func(p pageState) bool {
		return p.Running != "" && p.Running != "1" && p.Conn == "live"
	})
	apiProc.kill()
	p := b.waitPage(t, ctx, 10*time.Second, "the page to say it is reconnecting", func(p pageState) bool {
		return p.Conn == "reconnecting"
	})
	t.Logf("API killed; the page shows %v", p)
	s.startAPIAt(addr)
	p = b.waitPage(t, ctx, 25*time.Second, "the page to show the job succeeded after the API restart", func(p pageState) bool {
		return p.State == "succeeded" && p.Conn == "closed" && p.Percent == "100" &&
			slices.Equal(p.Stages, []string{"succeeded", "succeeded", "succeeded", "succeeded", "succeeded"})
	})
	if j := s.mustGet(id); j.State != "succeeded" {
		t.Fatalf("the job is %s", j.summary())
	}
	for _, m := range b.consoleProblems() {
		// Requests cut off or refused while the API was down.
		if strings.Contains(m, "net::ERR_") {
			t.Logf("browser console, expected during the outage: %s", m)
			continue
		}
		t.Errorf("browser console: %s", m)
	}
}
