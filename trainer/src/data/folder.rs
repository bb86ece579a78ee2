//! [`ImageFolder`]: a directory with one subfolder of images per class, like torchvision's
//! `datasets.ImageFolder`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::data::image::{index_error, Dataset, Image, Sample};
use crate::error::{Error, Result};

/// The file name endings (compared case-insensitively) of the images an [`ImageFolder`] lists;
/// other files are ignored.
pub const IMAGE_EXTENSIONS: [&str; 3] = [".jpg", ".jpeg", ".png"];

/// A dataset of image files laid out as `root/<class>/**/<file>`, like torchvision's
/// `ImageFolder`: the classes are the subfolders of `root` (sorted by name, the index of a name
/// is its label), the samples of a class every file under its folder (recursively, following
/// links) whose name ends with `.jpg`, `.jpeg` or `.png` in any case, directories sorted by path
/// and files by name. Images are decoded to RGB when a sample is read, not when the folder is
/// opened.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    samples: Vec<(PathBuf, usize)>,
}

impl ImageFolder {
    /// Lists the classes and images under `root`. Fails when `root` cannot be read (naming it),
    /// has no subfolder, or when some class folders hold no image (naming those classes, like
    /// torchvision's "Found no valid file for the classes ...").
    pub fn open(root: impl AsRef<Path>) -> Result<ImageFolder> {
        let root = root.as_ref().to_path_buf();
        let mut class_dirs: Vec<(OsString, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&root).map_err(|e| Error::io(&root, e))? {
            let entry = entry.map_err(|e| Error::io(&root, e))?;
            let path = entry.path();
            // Like `os.scandir(...).is_dir()`: follows links, false when it cannot tell.
            if path.is_dir() {
                class_dirs.push((entry.file_name(), path));
            }
        }
        if class_dirs.is_empty() {
            return Err(Error::dataset(
                &root,
                "found no class folder: an image folder has one subfolder of images per class",
            ));
        }
        class_dirs.sort();
        let mut classes = Vec::with_capacity(class_dirs.len());
        let mut samples = Vec::new();
        let mut empty = Vec::new();
        for (label, (name, dir)) in class_dirs.iter().enumerate() {
            let name = name.to_string_lossy().into_owned();
            let before = samples.len();
            for file in list_images(dir)? {
                samples.push((file, label));
            }
            if samples.len() == before {
                empty.push(name.clone());
            }
            classes.push(name);
        }
        if !empty.is_empty() {
            const SHOWN: usize = 20;
            let mut names = empty.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
            if empty.len() > SHOWN {
                names.push_str(&format!(" and {} more", empty.len() - SHOWN));
            }
            return Err(Error::dataset(
                &root,
                format!(
                    "found no valid file for the classes {names} ({} of {} class folders); supported \
                     extensions are: {}",
                    empty.len(),
                    classes.len(),
                    IMAGE_EXTENSIONS.join(", ")
                ),
            ));
        }
        Ok(ImageFolder {
            root,
            classes,
            samples,
        })
    }

    /// The folder the dataset was opened from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The class names (the subfolder names), sorted; the index of a name is its label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Every image file with its label, in dataset order.
    pub fn samples(&self) -> &[(PathBuf, usize)] {
        &self.samples
    }

    /// How many images each class has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &(_, label) in &self.samples {
            if let Some(c) = counts.get_mut(label) {
                *c += 1;
            }
        }
        counts
    }

    fn sample(&self, index: usize) -> Result<&(PathBuf, usize)> {
        self.samples
            .get(index)
            .ok_or_else(|| index_error("image folder", index, self.samples.len()))
    }
}

/// Whether a file name ends with one of [`IMAGE_EXTENSIONS`], ignoring case.
fn is_image_name(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy().to_lowercase();
    IMAGE_EXTENSIONS.iter().any(|ext| name.ends_with(ext))
}

/// The image files under `dir`, recursively (following links, each directory once), in the
/// order of Python's `sorted(os.walk(dir))` with sorted file names: directories by path, the
/// files of a directory by name.
fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<(PathBuf, Vec<OsString>)> = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    let mut seen = HashSet::new();
    while let Some(current) = pending.pop() {
        // A link cycle would make the walk endless: visit each real directory once.
        if let Ok(real) = current.canonicalize() {
            if !seen.insert(real) {
                continue;
            }
        }
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&current).map_err(|e| Error::io(&current, e))? {
            let entry = entry.map_err(|e| Error::io(&current, e))?;
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if is_image_name(&entry.file_name()) {
                files.push(entry.file_name());
            }
        }
        files.sort();
        dirs.push((current, files));
    }
    dirs.sort_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
    Ok(dirs
        .into_iter()
        .flat_map(|(dir, files)| files.into_iter().map(move |f| dir.join(f)))
        .collect())
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let (path, label) = self.sample(index)?;
        Ok(Sample {
            image: Image::open(path)?,
            label: *label,
        })
    }

    fn num_classes(&self) -> usize {
        self.classes.len()
    }

    fn class_names(&self) -> Vec<String> {
        self.classes.clone()
    }

    fn label(&self, index: usize) -> Result<usize> {
        Ok(self.sample(index)?.1)
    }

    fn describe(&self, index: usize) -> String {
        match self.samples.get(index) {
            Some((path, _)) => path.display().to_string(),
            None => format!("<image folder index {index} out of range>"),
        }
    }
}
