//! Per-request bookkeeping: the access log line and the core's metrics.

use std::rc::Rc;

use crate::http::{Answer, ConnectionEvent, Request};
use crate::logging;
use crate::registry::RequestObserver;
use crate::shards::Local;

/// Records every answered request in this core's metrics and, when
/// enabled, in the access log.
pub struct Observer {
    local: Rc<Local>,
    access_log: bool,
    next_request: std::cell::Cell<u64>,
}

impl Observer {
    /// An observer writing into `metrics`.
    pub fn new(local: Rc<Local>, access_log: bool) -> Self {
        Observer {
            local,
            access_log,
            next_request: std::cell::Cell::new(0),
        }
    }
}

impl RequestObserver for Observer {
    fn connection(&self, event: ConnectionEvent) {
        match event {
            ConnectionEvent::Opened => self.local.metrics.connection_opened(),
            ConnectionEvent::Closed => self.local.metrics.connection_closed(),
            ConnectionEvent::Refused => self.local.metrics.connection_refused(),
        }
    }

    fn observe(
        &self,
        request: &Request,
        route: &'static str,
        repository: Option<&str>,
        answer: &Answer,
    ) {
        let Answer {
            status,
            bytes_in,
            bytes_out,
            took,
        } = *answer;
        self.local.metrics.request(
            route,
            request.method.as_str(),
            status,
            took,
            bytes_in,
            bytes_out,
        );

        if self.access_log {
            let id = self.next_request.get();
            self.next_request.set(id + 1);
            logging::access(
                request.method.as_str(),
                &request.path,
                status,
                bytes_in,
                bytes_out,
                took,
                repository.unwrap_or_default(),
                &request.peer,
                &format!("{}-{id:x}", self.local.executor),
            );
        }
    }
}
