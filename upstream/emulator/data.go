package emulator

import "strings"

// AddOrg adds an organization with no repositories. Adding an existing
// organization (names are not case sensitive) does nothing.
func (s *Server) AddOrg(org string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addOrg(org)
}

func (s *Server) addOrg(login string) *org {
	o := s.orgs[strings.ToLower(login)]
	if o == nil {
		o = &org{login: login, repos: map[string]*repo{}}
		s.orgs[strings.ToLower(login)] = o
	}
	return o
}

// AddRepo adds the repository owner/name, creating the owner organization
// if it is missing, and returns the repository's id. Ids start at 1296269
// and increase with every new repository. Adding an existing repository
// sets its visibility and returns its id.
func (s *Server) AddRepo(owner, name string, private bool) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addRepo(owner, name, private).id
}

func (s *Server) addRepo(owner, name string, private bool) *repo {
	o := s.addOrg(owner)
	r := o.repos[strings.ToLower(name)]
	if r == nil {
		r = &repo{id: s.nextID, org: o, name: name, envs: map[string]string{}}
		s.nextID++
		o.repos[strings.ToLower(name)] = r
		s.repos[r.id] = r
	}
	r.private = private
	return r
}

// AddEnvironment adds the environment env (a raw name such as "prod/eu") to
// the repository owner/repo. A missing repository is created, public.
func (s *Server) AddEnvironment(owner, repoName, env string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.findRepo(owner, repoName)
	if r == nil {
		r = s.addRepo(owner, repoName, false)
	}
	if _, ok := r.envs[strings.ToLower(env)]; !ok {
		r.envs[strings.ToLower(env)] = env
	}
}

// findRepo looks a repository up by owner and name, case-insensitively.
// Callers hold s.mu.
func (s *Server) findRepo(owner, name string) *repo {
	o := s.orgs[strings.ToLower(owner)]
	if o == nil {
		return nil
	}
	return o.repos[strings.ToLower(name)]
}

// Demo describes what SeedDemo added.
type Demo struct {
	// Org is the organization's login.
	Org string
	// Repos are its repositories, in the order they were added.
	Repos []DemoRepo
}

// DemoRepo is one repository SeedDemo added.
type DemoRepo struct {
	Name         string
	ID           int64
	Private      bool
	Environments []string
}

// SeedDemo adds the demo data: organization "octo-org" with the public
// repository "hello-world" (environments "staging" and "prod/eu"), the
// private repository "secret-sauce" and the public repository "docs". It
// returns what it added; calling it again adds nothing new.
func (s *Server) SeedDemo() Demo {
	d := Demo{Org: "octo-org", Repos: []DemoRepo{
		{Name: "hello-world", Environments: []string{"staging", "prod/eu"}},
		{Name: "secret-sauce", Private: true},
		{Name: "docs"},
	}}
	for i := range d.Repos {
		r := &d.Repos[i]
		r.ID = s.AddRepo(d.Org, r.Name, r.Private)
		for _, env := range r.Environments {
			s.AddEnvironment(d.Org, r.Name, env)
		}
	}
	return d
}
