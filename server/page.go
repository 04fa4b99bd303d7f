package server

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/staged-dev/staged/api"
)

// pageFS holds the pages (home, job): each one self-contained HTML file with its CSS and
// JavaScript inline, so it needs nothing from the network but the API.
//
//go:embed page/*.html
var pageFS embed.FS

var (
	jobPageHTML  = mustRead("page/job.html")
	homePageHTML = mustRead("page/home.html")
	notFoundHTML = mustRead("page/notfound.html")
	// The pages allow only their own inline style and script (by hash) and
	// connections to this origin.
	jobPageCSP  = contentSecurityPolicy(jobPageHTML)
	homePageCSP = contentSecurityPolicy(homePageHTML)
	notFoundCSP = contentSecurityPolicy(notFoundHTML)
)

// jobPage is GET /jobs/:id: the live page of a job. Any well-formed id gets
// the page (its script shows "not found" when the API says 404); a
// malformed one gets a 404 page.
func (s *Server) jobPage(c echo.Context) error {
	h := c.Response().Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if !api.ValidID(c.Param("id")) {
		h.Set("Content-Security-Policy", notFoundCSP)
		return c.HTMLBlob(http.StatusNotFound, notFoundHTML)
	}
	h.Set("Content-Security-Policy", jobPageCSP)
	h.Set(echo.HeaderCacheControl, "no-cache")
	return c.HTMLBlob(http.StatusOK, jobPageHTML)
}

// homePage is GET /: the caller's jobs, live, filterable (a static page
// whose script polls GET /v1/jobs with the key it is given).
func (s *Server) homePage(c echo.Context) error {
	h := c.Response().Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", homePageCSP)
	h.Set(echo.HeaderCacheControl, "no-cache")
	return c.HTMLBlob(http.StatusOK, homePageHTML)
}

func mustRead(name string) []byte {
	b, err := pageFS.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

// contentSecurityPolicy allows the page's inline <style> and <script>
// blocks by their SHA-256, and nothing else but same-origin fetches.
func contentSecurityPolicy(page []byte) string {
	csp := "default-src 'none'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	if h := inlineHash(page, "<style>", "</style>"); h != "" {
		csp += "; style-src " + h
	}
	if h := inlineHash(page, "<script>", "</script>"); h != "" {
		csp += "; script-src " + h
	}
	return csp
}

func inlineHash(page []byte, open, close string) string {
	_, rest, ok := bytes.Cut(page, []byte(open))
	if !ok {
		return ""
	}
	body, _, ok := bytes.Cut(rest, []byte(close))
	if !ok {
		return ""
	}
	sum := sha256.Sum256(body)
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}
