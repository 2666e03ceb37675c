//! Custom audio processors: host code applied, in order, to every internal-rate frame before VAD.

use std::sync::Arc;

/// A frame processor (noise gate, gain, echo canceller, …). Runs on the realtime thread: `process`
/// must not allocate, lock or block. A panic in it ends its session only (`VB_EVENT_ERROR` with
/// `VB_ERR_PANIC`, then `VB_STATE_STOPPED`); the other sessions go on.
pub trait AudioProcessor: Send {
    /// Unique name within a backend.
    fn name(&self) -> &str;
    /// Lower runs earlier.
    fn order(&self) -> i32;
    /// Processes one frame in place.
    fn process(&mut self, pcm: &mut [i16], sample_rate: u32);
}

/// Makes one processor instance per session (processors may keep per-session state).
pub type ProcessorFactory = Arc<dyn Fn() -> Box<dyn AudioProcessor> + Send + Sync>;

/// The processors of one session, sorted by order (stable for equal orders).
#[derive(Default)]
pub struct ProcessorChain {
    processors: Vec<Box<dyn AudioProcessor>>,
}

impl ProcessorChain {
    /// Builds a chain from the backend's factories.
    pub fn from_factories(factories: &[ProcessorFactory]) -> Self {
        let mut processors: Vec<Box<dyn AudioProcessor>> = factories.iter().map(|f| f()).collect();
        processors.sort_by_key(|p| p.order());
        ProcessorChain { processors }
    }

    /// Names in the order they run.
    pub fn names(&self) -> Vec<String> {
        self.processors
            .iter()
            .map(|p| p.name().to_owned())
            .collect()
    }

    /// Applies every processor to `pcm`. Realtime-safe if the processors are.
    pub fn process(&mut self, pcm: &mut [i16], sample_rate: u32) {
        for p in &mut self.processors {
            p.process(pcm, sample_rate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Add(&'static str, i32, i16);
    impl AudioProcessor for Add {
        fn name(&self) -> &str {
            self.0
        }
        fn order(&self) -> i32 {
            self.1
        }
        fn process(&mut self, pcm: &mut [i16], _: u32) {
            for s in pcm {
                *s = *s * 10 + self.2;
            }
        }
    }

    #[test]
    fn processors_run_in_order() {
        let factories: Vec<ProcessorFactory> = vec![
            Arc::new(|| Box::new(Add("second", 5, 2)) as Box<dyn AudioProcessor>),
            Arc::new(|| Box::new(Add("first", -1, 1)) as Box<dyn AudioProcessor>),
        ];
        let mut chain = ProcessorChain::from_factories(&factories);
        assert_eq!(chain.names(), ["first", "second"]);
        let mut pcm = [0i16; 4];
        chain.process(&mut pcm, 16000);
        assert_eq!(pcm, [12; 4], "first adds 1, then second makes it 12");
    }
}
