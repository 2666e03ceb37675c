//! A small metrics registry: counters, up-down counters, gauges and fixed-bucket histograms, each
//! with attribute sets. Written by the session tasks and the telemetry task on the I/O runtime
//! (never by the realtime thread: what it counts is read from its atomics at collection), read by
//! the exporters.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// What kind of instrument a metric is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A monotonic cumulative count.
    Counter,
    /// A cumulative count that goes up and down.
    UpDownCounter,
    /// A value sampled at collection.
    Gauge,
    /// A distribution over fixed, ascending bucket upper bounds (inclusive); values above the last
    /// bound fall into an overflow bucket.
    Histogram(&'static [f64]),
}

/// The identity of a metric.
#[derive(Debug)]
pub struct Instrument {
    /// Dotted OpenTelemetry name, e.g. `backend.latency`.
    pub name: &'static str,
    /// What it measures.
    pub description: &'static str,
    /// UCUM unit, e.g. `ms`, `1`, `{frame}/s`.
    pub unit: &'static str,
    /// Counter, up-down counter, gauge or histogram.
    pub kind: Kind,
}

/// The attributes of a data point: key/value pairs, kept sorted by key.
pub type Attributes = Vec<(&'static str, String)>;

/// The value of one data point.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A counter or up-down counter.
    Int(i64),
    /// A gauge.
    Double(f64),
    /// A histogram.
    Histogram(HistogramValue),
}

/// What a histogram data point holds.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValue {
    /// One count per bucket: `bounds.len() + 1`, the last one for values above every bound.
    pub bucket_counts: Vec<u64>,
    /// Values recorded.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest (meaningless while `count` is 0).
    pub min: f64,
    /// The largest (meaningless while `count` is 0).
    pub max: f64,
}

impl HistogramValue {
    fn empty(bounds: &[f64]) -> Self {
        HistogramValue {
            bucket_counts: vec![0; bounds.len() + 1],
            count: 0,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
        }
    }

    fn record(&mut self, bounds: &[f64], value: f64) {
        // The first bound at or above the value: bounds are inclusive upper limits.
        let bucket = bounds.partition_point(|&bound| bound < value);
        self.bucket_counts[bucket] += 1;
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.count += 1;
        self.sum += value;
    }
}

/// One metric and its data points at collection.
#[derive(Debug, Clone)]
pub struct MetricPoints {
    /// The metric.
    pub instrument: &'static Instrument,
    /// Its data points, ordered by attributes.
    pub points: Vec<(Attributes, Value)>,
}

/// The registry of one backend. Every method may be called from any thread except the realtime
/// thread (they take a short lock).
#[derive(Debug)]
pub struct Registry {
    series: Mutex<Vec<Series>>,
}

#[derive(Debug)]
struct Series {
    instrument: &'static Instrument,
    points: BTreeMap<Attributes, Value>,
}

impl Registry {
    /// A registry of `instruments`. Those that are not counters start with one zero data point
    /// without attributes, so that exporters show them before anything happened.
    pub fn new(instruments: &[&'static Instrument]) -> Self {
        let series = instruments
            .iter()
            .map(|&instrument| {
                let mut points = BTreeMap::new();
                if instrument.kind != Kind::Counter {
                    points.insert(Vec::new(), zero(instrument.kind));
                }
                Series { instrument, points }
            })
            .collect();
        Registry {
            series: Mutex::new(series),
        }
    }

    /// Adds `delta` to a counter or up-down counter.
    pub fn add(&self, instrument: &Instrument, attributes: Attributes, delta: i64) {
        self.update(instrument, attributes, |value| {
            if let Value::Int(total) = value {
                *total += delta;
            }
        });
    }

    /// Records `value` into a histogram.
    pub fn record(&self, instrument: &Instrument, attributes: Attributes, value: f64) {
        let Kind::Histogram(bounds) = instrument.kind else {
            return;
        };
        self.update(instrument, attributes, |point| {
            if let Value::Histogram(histogram) = point {
                histogram.record(bounds, value);
            }
        });
    }

    /// Replaces the value of a data point (observed counters and gauges).
    pub fn set(&self, instrument: &Instrument, attributes: Attributes, value: Value) {
        self.update(instrument, attributes, |point| *point = value);
    }

    /// Every metric with its data points; metrics without any are left out.
    pub fn snapshot(&self) -> Vec<MetricPoints> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .iter()
            .filter(|s| !s.points.is_empty())
            .map(|s| MetricPoints {
                instrument: s.instrument,
                points: s
                    .points
                    .iter()
                    .map(|(attributes, value)| (attributes.clone(), value.clone()))
                    .collect(),
            })
            .collect()
    }

    fn update(
        &self,
        instrument: &Instrument,
        mut attributes: Attributes,
        f: impl FnOnce(&mut Value),
    ) {
        attributes.sort();
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let Some(series) = series
            .iter_mut()
            .find(|s| s.instrument.name == instrument.name)
        else {
            debug_assert!(false, "{} is not registered", instrument.name);
            return;
        };
        f(series
            .points
            .entry(attributes)
            .or_insert_with(|| zero(instrument.kind)));
    }
}

/// The starting value of a data point of `kind`.
fn zero(kind: Kind) -> Value {
    match kind {
        Kind::Counter | Kind::UpDownCounter => Value::Int(0),
        Kind::Gauge => Value::Double(0.0),
        Kind::Histogram(bounds) => Value::Histogram(HistogramValue::empty(bounds)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static LATENCY: Instrument = Instrument {
        name: "test.latency",
        description: "",
        unit: "ms",
        kind: Kind::Histogram(&[10.0, 100.0]),
    };
    static ERRORS: Instrument = Instrument {
        name: "test.errors",
        description: "",
        unit: "1",
        kind: Kind::Counter,
    };

    #[test]
    fn a_value_on_a_bound_counts_in_that_bound_s_bucket() {
        let registry = Registry::new(&[&LATENCY]);
        for value in [10.0, 10.5, 100.0, 250.0, 3.0] {
            registry.record(&LATENCY, Vec::new(), value);
        }
        let snapshot = registry.snapshot();
        let Value::Histogram(h) = &snapshot[0].points[0].1 else {
            panic!("not a histogram")
        };
        assert_eq!(h.bucket_counts, [2, 2, 1]);
        assert_eq!((h.count, h.sum, h.min, h.max), (5, 373.5, 3.0, 250.0));
    }

    #[test]
    fn counters_appear_per_attribute_set_once_touched() {
        let registry = Registry::new(&[&LATENCY, &ERRORS]);
        assert_eq!(
            registry.snapshot().len(),
            1,
            "an untouched counter is left out"
        );
        let attrs = |p: &str| vec![("provider", p.to_owned()), ("code", "X".to_owned())];
        registry.add(&ERRORS, attrs("a"), 1);
        registry.add(&ERRORS, attrs("b"), 1);
        registry.add(&ERRORS, attrs("a"), 1);
        let snapshot = registry.snapshot();
        let errors = &snapshot[1];
        assert_eq!(errors.instrument.name, "test.errors");
        let sorted = |p: &str| vec![("code", "X".to_owned()), ("provider", p.to_owned())];
        assert_eq!(
            errors.points,
            [(sorted("a"), Value::Int(2)), (sorted("b"), Value::Int(1))]
        );
    }
}
