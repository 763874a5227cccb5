//! Local servers that speak providers' real wire protocols (APNs and FCM over
//! HTTP/2 with TLS, the OAuth token endpoint), with fault injection. The
//! integration tests, the push bench and `tocsin demo` use them; they are
//! compiled into the library so the demo can run them in-process.
