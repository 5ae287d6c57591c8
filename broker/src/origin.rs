//! The `Origin` rule for every WebSocket a browser may open — `/ws`, `/sse` and MQTT
//! over WebSocket: `[http] allowed_origins` (empty: any) and `require_origin`.

use switchboard_config::HttpConfig;

/// Ok, or why the request is refused (HTTP 403).
pub fn check(origin: Option<&str>, http: &HttpConfig) -> Result<(), String> {
    match origin {
        None if http.require_origin => Err("an Origin header is required".into()),
        None => Ok(()),
        Some(_) if http.allowed_origins.is_empty() => Ok(()),
        Some(origin)
            if http
                .allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(origin)) =>
        {
            Ok(())
        }
        Some(origin) => Err(format!("origin {origin} is not allowed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_origins_pass_and_others_do_not() {
        let mut http = HttpConfig::default();
        assert!(
            check(Some("https://evil.example"), &http).is_ok(),
            "empty list: any"
        );
        http.allowed_origins = vec!["https://dash.example".into()];
        assert!(check(Some("https://DASH.example"), &http).is_ok());
        assert!(check(Some("https://evil.example"), &http).is_err());
        assert!(check(None, &http).is_ok(), "non-browser clients");
        http.require_origin = true;
        assert!(check(None, &http).is_err());
    }
}
