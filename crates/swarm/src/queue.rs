//! The dial queue (`shuffled-priority-queue`): the highest priority first, a random entry
//! within it.

use rand::Rng;

use crate::peer::Priority;

/// Five levels, one per [`Priority`].
#[derive(Debug)]
pub(crate) struct ShuffledQueue<K> {
    levels: [Vec<K>; 5],
}

impl<K> Default for ShuffledQueue<K> {
    fn default() -> Self {
        Self {
            levels: Default::default(),
        }
    }
}

impl<K> ShuffledQueue<K> {
    pub(crate) fn push(&mut self, key: K, priority: Priority) {
        self.levels[priority.level()].push(key);
    }

    pub(crate) fn len(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.levels.iter().all(Vec::is_empty)
    }

    /// JS `shift` = `remove(head())`: a random entry of the highest non-empty level.
    pub(crate) fn shift(&mut self, rng: &mut impl Rng) -> Option<K> {
        let level = self.levels.iter_mut().rev().find(|l| !l.is_empty())?;
        let i = rng.gen_range(0..level.len());
        Some(level.swap_remove(i))
    }

    pub(crate) fn clear(&mut self) {
        for l in &mut self.levels {
            l.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn highest_priority_first_random_within() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut q = ShuffledQueue::default();
            q.push("low", Priority::Low);
            q.push("n1", Priority::Normal);
            q.push("n2", Priority::Normal);
            q.push("n3", Priority::Normal);
            q.push("top", Priority::VeryHigh);
            q.push("vlow", Priority::VeryLow);
            assert_eq!(q.len(), 6);
            assert_eq!(q.shift(&mut rng), Some("top"));
            let normals: Vec<_> = (0..3).map(|_| q.shift(&mut rng).unwrap()).collect();
            seen_first.insert(normals[0]);
            let mut sorted = normals.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, ["n1", "n2", "n3"]);
            assert_eq!(q.shift(&mut rng), Some("low"));
            assert_eq!(q.shift(&mut rng), Some("vlow"));
            assert!(q.is_empty());
            assert_eq!(q.shift(&mut rng), None);
        }
        assert_eq!(seen_first.len(), 3, "shuffled within a priority");
    }
}
