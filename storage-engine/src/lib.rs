//! berth-storage: the log-structured segment store under berth.
