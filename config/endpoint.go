package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// endpoint is a parsed OTLP endpoint; scheme is empty for the bare
// host:port form.
type endpoint struct {
	scheme string
	host   string
	port   string // may be empty in the URL form, where the scheme implies it
	path   string
}

// parseEndpoint checks an endpoint for protocol. The error explains what is
// wrong; the caller names the key or variable and the value.
func parseEndpoint(s, protocol string) (endpoint, error) {
	want := "want host:port or http(s)://host:port"
	if protocol == ProtocolHTTPProtobuf {
		want = "want http(s)://host:port[/path] or host:port"
	}
	if strings.Contains(s, "://") {
		return parseEndpointURL(s, protocol, want)
	}
	if strings.ContainsAny(s, "/?#@") {
		return endpoint{}, errors.New(want)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if !strings.Contains(s, ":") {
			return endpoint{}, fmt.Errorf("missing port (%s)", want)
		}
		return endpoint{}, errors.New(want)
	}
	if host == "" {
		return endpoint{}, fmt.Errorf("missing host (%s)", want)
	}
	if err := checkPort(port); err != nil {
		return endpoint{}, err
	}
	return endpoint{host: host, port: port}, nil
}

func parseEndpointURL(s, protocol, want string) (endpoint, error) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return endpoint{}, fmt.Errorf("not a valid URL: %v (%s)", err, want)
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "http" && scheme != "https":
		return endpoint{}, fmt.Errorf("unsupported scheme %q (%s)", u.Scheme, want)
	case u.Opaque != "":
		return endpoint{}, errors.New(want)
	case u.User != nil:
		return endpoint{}, errors.New("credentials in the URL are not supported; use headers")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return endpoint{}, fmt.Errorf("a query or fragment is not supported (%s)", want)
	case u.Hostname() == "":
		return endpoint{}, fmt.Errorf("missing host (%s)", want)
	case strings.HasSuffix(u.Host, ":"):
		return endpoint{}, fmt.Errorf("empty port (%s)", want)
	case protocol == ProtocolGRPC && u.Path != "" && u.Path != "/":
		return endpoint{}, fmt.Errorf("a gRPC endpoint takes no path (%s)", want)
	}
	if port := u.Port(); port != "" {
		if err := checkPort(port); err != nil {
			return endpoint{}, err
		}
	}
	return endpoint{scheme: scheme, host: u.Hostname(), port: u.Port(), path: u.Path}, nil
}

func checkPort(port string) error {
	n, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("port %q is not a number", port)
	}
	if n < 1 || n > 65535 {
		return fmt.Errorf("port %d is out of range 1-65535", n)
	}
	return nil
}
