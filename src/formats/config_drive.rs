//! The cloud-init config drive xo-edge attaches to a new VM: a small FAT volume labelled `cidata`, made with the
//! `fatfs` crate, holding what cloud-init's NoCloud datasource reads (`meta-data`, `user-data`, `network-config`)
//! and, as XO writes it too, the OpenStack config-drive layout (`openstack/latest/meta_data.json`, `user_data`) as
//! a fallback datasource. cloud-init finds it by its label (blkid reads a FAT volume's label from its boot sector
//! when the root directory has none).

use std::io::{Cursor, Write};

/// The volume's size: a FAT12 volume this small holds any user data a 64 KiB JSON request can carry.
pub const SIZE: usize = 2 << 20;

/// The volume label cloud-init's NoCloud datasource looks for.
pub const LABEL: &[u8; 11] = b"cidata     ";

/// Builds the drive's image: `meta-data` names the instance (the VM's uuid), `user-data` is the cloud config,
/// `network-config` is written when given.
pub fn build(vm_uuid: &str, user_data: &str, network_config: Option<&str>) -> std::io::Result<Vec<u8>> {
    let mut image = Cursor::new(vec![0u8; SIZE]);
    fatfs::format_volume(&mut image, fatfs::FormatVolumeOptions::new().volume_label(*LABEL))?;
    {
        let fs = fatfs::FileSystem::new(&mut image, fatfs::FsOptions::new())?;
        let root = fs.root_dir();
        let write = |dir: &fatfs::Dir<_>, name: &str, text: &str| -> std::io::Result<()> {
            let mut f = dir.create_file(name)?;
            f.truncate()?;
            f.write_all(text.as_bytes())
        };
        write(&root, "meta-data", &format!("instance-id: {vm_uuid}\n"))?;
        write(&root, "user-data", user_data)?;
        if let Some(network) = network_config {
            write(&root, "network-config", network)?;
        }
        let latest = root.create_dir("openstack")?.create_dir("latest")?;
        write(&latest, "meta_data.json", &serde_json::json!({ "uuid": vm_uuid }).to_string())?;
        write(&latest, "user_data", user_data)?;
        drop((latest, root));
        fs.unmount()?;
    }
    Ok(image.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read(fs: &fatfs::FileSystem<Cursor<Vec<u8>>>, path: &str) -> Option<String> {
        let mut text = String::new();
        fs.root_dir().open_file(path).ok()?.read_to_string(&mut text).ok()?;
        Some(text)
    }

    #[test]
    fn the_drive_holds_what_cloud_init_reads() {
        let user = "#cloud-config\nhostname: web-1\n";
        let image = build("u-1", user, Some("version: 2\n")).unwrap();
        assert_eq!(image.len(), SIZE);
        let fs = fatfs::FileSystem::new(Cursor::new(image), fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.volume_label(), "cidata");
        assert_eq!(read(&fs, "meta-data").as_deref(), Some("instance-id: u-1\n"));
        assert_eq!(read(&fs, "user-data").as_deref(), Some(user));
        assert_eq!(read(&fs, "network-config").as_deref(), Some("version: 2\n"));
        assert_eq!(read(&fs, "openstack/latest/user_data").as_deref(), Some(user));
        assert_eq!(read(&fs, "openstack/latest/meta_data.json").as_deref(), Some(r#"{"uuid":"u-1"}"#));
        let without = build("u-2", user, None).unwrap();
        let fs = fatfs::FileSystem::new(Cursor::new(without), fatfs::FsOptions::new()).unwrap();
        assert!(read(&fs, "network-config").is_none());
        // 64 KiB of user data (the most a JSON request carries) fits.
        let big = "#cloud-config\n".to_string() + &"x".repeat(64 << 10);
        assert!(build("u-3", &big, None).is_ok());
    }
}
