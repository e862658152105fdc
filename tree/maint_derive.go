package tree

// The Maint verbs of the commands that bring the tree in step as a whole:
// watch (DeriveRepo, DeriveCatalog), migrate and config nginx
// (LinkForNginx). Each runs inside Maintain, the tree lock held
// exclusively, so no export, delete or collection is part way through
// its own steps — whose intermediate states look like damage — while it
// reads and rewrites.

// DeriveRepo re-derives, in publish order, only what is out of step in
// repo with its manifests and type maps — manifests' headers, nginx's
// typed links, referrers indexes, then tags/list and nginx's tag links,
// and last the catalog page — and reports what it changed (Root.DeriveRepo has the details). The type
// maps are the truth: a tag whose type map is gone is a tag deleted (an
// operator's rm, an rsync --delete that has not yet reached tags/list),
// so its entry in tags/list and its links go, and Derived.Removed names
// it with the manifest nginx served for it.
func (m *Maint) DeriveRepo(repo string) (Derived, error) {
	if err := m.check(); err != nil {
		return Derived{Repo: repo}, err
	}
	return m.r.deriveRepo(repo)
}

// DeriveCatalog rewrites _catalog and the catalog page from the
// repositories on disk if they are out of step, and reports what changed
// (Root.DeriveCatalog).
func (m *Maint) DeriveCatalog() (CatalogChange, error) {
	if err := m.check(); err != nil {
		return CatalogChange{}, err
	}
	return m.r.deriveCatalog()
}

// Migrate rewrites the tree from TripleO's conventions to the current
// layout, as Root.Migrate describes; in a read-only Maintain (a dry run)
// it only plans, and reports what it would change.
func (m *Maint) Migrate() (*MigrateReport, error) {
	if !m.held.Load() {
		return nil, errNotHeld
	}
	p, err := m.r.planMigration(nil)
	if err != nil {
		return nil, err
	}
	rep := p.report()
	rep.DryRun = m.readOnly
	if m.readOnly {
		return rep, nil
	}
	return rep, m.r.migrate(p)
}

// LinkForNginx gives the whole tree what nginx needs, as
// Root.LinkForNginx describes: a typed link for every manifest lacking
// one, and tag symlinks from every type map.
func (m *Maint) LinkForNginx() (NginxLinks, error) {
	if err := m.check(); err != nil {
		return NginxLinks{}, err
	}
	return m.r.linkForNginx()
}
